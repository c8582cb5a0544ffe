"""Claim: on this project's 2-core CPU, ``paradigm.engine=vmap`` cannot train mobilenetv3
clients 1.3x faster than the loop, because its batched convolution and BatchNorm kernels
alone take about as long as the loop's whole step.

vmap saves the per-client dispatch of every operator, but turns each convolution into one
grouped over the clients, in the standard layout; the depthwise ones are then much slower
than the same work done client by client in channels-last layout. This measures both sides
with the engine's own code: ``VmapEngine._grads`` for K clients at once (one vmapped call),
and for one client at a time (then it takes the loop's path: load the weights, forward,
backward); the weights channels-last as the runner lays them out on a CPU. Per client step
it prints the whole time of each, and the self time of their convolution and BatchNorm
kernels (torch.profiler), with the depthwise convolutions' share; loop / vmap-kernels is the
most vmap could reach if everything else it does took no time. Other CPUs' kernels differ:
run it where the claim is made.

The whole step is also timed with its input laid out with the clients next to the channels
(``clients_by_channels``: the first grouped convolution then reads a channels-last view); it
gains little.

    python bench/bench_vmap_bound.py [--clients 10 5] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from common import median_time, write_result
from rich.console import Console
from rich.table import Table
from torch.profiler import profile

from paradigms.federated.client import FlatModel
from paradigms.federated.strategies import Strategy
from paradigms.federated.vmap_engine import VmapEngine
from paradigms.models.optim import build_optimizer
from paradigms.runner.accelerate import accelerate

MODEL, IMG, BATCH = "mobilenetv3_small_050", 32, 32  # the speed bench's task
KERNELS = ("conv", "batch_norm")  # operator names whose self time is the batched work
# the table after "clients": header -> the record's key (milliseconds if it ends so, else a ratio)
COLUMNS = {
    "loop": "loop_ms",
    "vmap": "vmap_ms",
    "vmap speed-up": "vmap_speed_up",
    "vmap, input by channels": "vmap_by_channels_ms",
    "loop conv+BN kernels": "loop_kernel_ms",
    "loop depthwise": "loop_depthwise_ms",
    "vmap conv+BN kernels": "vmap_kernel_ms",
    "vmap depthwise": "vmap_depthwise_ms",
    "vmap's bound": "vmap_bound",
}


def engine_and_rows(clients: int):
    """The engine on the runner's CPU layout, and ``clients`` rows of weights and buffers."""
    torch.manual_seed(0)
    model = timm.create_model(MODEL, num_classes=10, in_chans=1)
    accelerate(model, torch.device("cpu"), channels_last=True)
    flat = FlatModel(model)
    optimizer = build_optimizer(model, {"name": "momentum", "lr": 0.05, "momentum": 0.0})
    engine = VmapEngine(flat, optimizer, Strategy(), clients_per_step=clients)
    params = flat.params + 1e-3 * torch.randn(clients, flat.params.numel())
    buffers = flat.buffers.expand(clients, -1).clone()
    x = torch.randn(clients, BATCH, 1, IMG, IMG)
    y = torch.randint(0, 10, (clients, BATCH))
    return engine, (params, buffers, x, y)


def clients_by_channels(x: torch.Tensor) -> torch.Tensor:
    """[K, N, C, H, W] stored as [N, H, W, K, C]: vmap's grouped convolution over the K
    clients then reads a channels-last [N, K*C, H, W] view, without a copy."""
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)


def loop_step(engine: VmapEngine, rows) -> None:
    """Each client's step on its own: ``_grads`` of one row is the loop's step."""
    params, buffers, x, y = rows
    for k in range(len(params)):
        engine._grads(params[k : k + 1], buffers[k : k + 1], x[k : k + 1], y[k : k + 1], 0)


def vmap_step(engine: VmapEngine, rows) -> None:
    """All clients' steps in one vmapped call."""
    engine._grads(*rows, 0)


def per_client_ms(step, engine: VmapEngine, rows, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        step(engine, rows)
    return (time.perf_counter() - started) / calls / len(rows[0]) * 1000


def kernel_ms(step, engine: VmapEngine, rows) -> tuple[float, float]:
    """Self time of the convolution and BatchNorm operators per client step, and of those
    convolutions among them with one input channel per group (depthwise, and the 1-channel
    stem)."""
    with profile(record_shapes=True) as profiled:
        step(engine, rows)
    total = depthwise = 0.0
    for event in profiled.events():
        if not any(k in event.name for k in KERNELS):
            continue
        total += event.self_cpu_time_total
        weight = {"aten::mkldnn_convolution": 1, "aten::convolution_backward": 2}.get(event.name)
        if weight is not None and event.input_shapes[weight][1] == 1:
            depthwise += event.self_cpu_time_total
    return total / 1000 / len(rows[0]), depthwise / 1000 / len(rows[0])


def whole_step(clients: int, repeats: int, calls: int) -> dict[str, float]:
    """Per client step: loop, vmap and vmap on a clients-by-channels input (whole, ms), and
    the conv + BatchNorm kernels of the first two (and their depthwise convolutions)."""
    engine, rows = engine_and_rows(clients)
    params, buffers, x, y = rows
    by_channels = (params, buffers, clients_by_channels(x), y)
    variants = {
        "loop": (loop_step, rows),
        "vmap": (vmap_step, rows),
        "vmap_by_channels": (vmap_step, by_channels),
    }
    for step, data in variants.values():
        step(engine, data)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (step, data) in variants.items():
            times[name].append(per_client_ms(step, engine, data, calls))
    record = {f"{name}_ms": median_time(samples) for name, samples in times.items()}
    for name in ("loop", "vmap"):
        step, data = variants[name]
        kernels = [kernel_ms(step, engine, data) for _ in range(3)]
        record[f"{name}_kernel_ms"] = median_time([total for total, _ in kernels])
        record[f"{name}_depthwise_ms"] = median_time([depthwise for _, depthwise in kernels])
    record["vmap_speed_up"] = record["loop_ms"] / record["vmap_ms"]
    record["vmap_bound"] = record["loop_ms"] / record["vmap_kernel_ms"]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="steps timed per repeat")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    whole = Table(
        title=f"{MODEL} {IMG}px, batch {BATCH}, channels-last weights, {args.threads} "
        f"thread(s): ms per client step, median of {args.repeats}"
    )
    for column in ("clients", *COLUMNS):
        whole.add_column(column, justify="right")
    for clients in args.clients:
        record = {"model": MODEL, "clients": clients, "threads": args.threads,
                  **whole_step(clients, args.repeats, args.calls)}  # fmt: skip
        write_result("vmap_bound", record)
        print(record, flush=True)
        cells = [
            f"{record[key]:.1f}" if key.endswith("_ms") else f"{record[key]:.2f}x"
            for key in COLUMNS.values()
        ]
        whole.add_row(str(clients), *cells)
    Console(width=140).print(whole)


if __name__ == "__main__":
    main()
