"""What one training step of the speed bench's task costs on this CPU, by batch size: how much
of it the batch's arithmetic is, and what a batch size the process has not run yet adds.

The model is mobilenetv3_small_050 at 32 px in channels-last, SGD, 1 thread (as each of the
forked bench's two processes runs it). Per batch size: the first step at that size in the
process, then the median of the next ``--steps``. A step that costs about the same at 8 as at
32 examples is bound by dispatch (the operators' fixed cost), not by arithmetic. Then, from
the runner's own partition of the bench's task (seeds 0..``--seeds``-1), how many batch sizes
a run meets: every client's size is fixed, so its last batch of each epoch has one size. Last,
a step at the task's batch size in float32 and under bf16 autocast, alternated: whether this
CPU's bfloat16 kernels (AMX where it has them) would shorten the rounds.

    python bench/bench_step_floor.py [--steps 10] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from bench_federated_speed import BATCH, CLIENTS, IMG, MODEL, RUNNER, partitioned
from common import composed, write_result
from rich.console import Console
from rich.table import Table

from paradigms.federated.client import _batches, batches_per_epoch
from paradigms.models.backbone import create_model

SIZES = (8, 16, 32, 48, 64)


def step_ms(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int, chans: int, bf16: bool = False
) -> float:
    """One SGD step on ``n`` random channels-last images, in milliseconds (the forward pass
    under bf16 autocast with ``bf16``, as ``trainer.precision=bf16-mixed`` runs it)."""
    x = torch.randn(n, chans, IMG, IMG).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))
    started = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return 1000 * (time.perf_counter() - started)


def batch_sizes(seed: int) -> set[int]:
    """The batch sizes one epoch of every client meets in the bench's task for ``seed`` (the
    local loop's own batching, ``client._batches``)."""
    sizes = set()
    for index in partitioned(seed)[2]:
        steps = batches_per_epoch(len(index), BATCH)
        sizes |= {len(b) for b in _batches(len(index), BATCH, steps, torch.Generator())}
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = composed(RUNNER)["backbone"]
    chans = backbone["in_chans"]
    model = create_model(backbone, 10).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):  # the process's first step pays for more than its shape
        step_ms(model, optimizer, 24, chans)
    table = Table(title=f"{MODEL} {IMG}px channels-last, SGD, 1 thread: ms a step")
    for column in ("batch", "first step at this size", f"median of next {args.steps}",
                   "ms an example"):  # fmt: skip
        table.add_column(column, justify="right")
    rows = {}
    for n in SIZES:
        first = step_ms(model, optimizer, n, chans)
        steady = statistics.median(step_ms(model, optimizer, n, chans) for _ in range(args.steps))
        rows[n] = {"first_ms": round(first, 2), "steady_ms": round(steady, 2)}
        table.add_row(str(n), f"{first:.1f}", f"{steady:.1f}", f"{steady / n:.2f}")
    Console().print(table)
    met = {seed: sorted(batch_sizes(seed)) for seed in range(args.seeds)}
    for seed, sizes in met.items():
        print(f"seed {seed}: {len(sizes)} batch sizes over the {CLIENTS} clients: {sizes}")
    precisions: dict[str, list[float]] = {"float32": [], "bf16 autocast": []}
    for _ in range(3):  # alternated, each after a step of its own
        for name, samples in precisions.items():
            bf16 = name != "float32"
            step_ms(model, optimizer, BATCH, chans, bf16)
            runs = [step_ms(model, optimizer, BATCH, chans, bf16) for _ in range(args.steps)]
            samples.append(round(statistics.median(runs), 2))
    for name, samples in precisions.items():
        print(f"batch {BATCH}, {name}: {samples} ms a step (median of {args.steps}, 3 turns)")
    write_result("step_floor", {"steps": rows, "batch_sizes": met, "precision": precisions})


if __name__ == "__main__":
    main()
