"""Speed: this runner's FedAvg against a bare single-process PyTorch FedAvg loop.

Both run the same experiment: digits split by the same Dirichlet partition, the same timm
model and initial weights, plain SGD with the same learning rate and batch size, the same
clients sampled, evaluation on the test set after every round. The bare loop is what one
writes by hand: ``load_state_dict`` per client, a fresh optimizer, state dicts averaged. The
runner is timed through the real CLI (``summary.json``'s ``wall_time_s``: the paradigm's run,
without Python's start-up); the bare loop in this process. Each is run ``--repeats`` times,
alternating, and the fastest counts (the machine is shared).

    python bench/bench_federated_speed.py [--rounds 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
import torch.nn.functional as F
from common import write_result

from datamodules.digits import DigitsDataModule
from paradigms.federated.paradigm import PARTITION_SEED
from paradigms.federated.partition import Dirichlet
from paradigms.federated.server import SAMPLE, stream
from paradigms.models.backbone import create_model

ROOT = Path(__file__).resolve().parents[1]

SEED, CLIENTS, FRACTION, BATCH, LR, MOMENTUM, IMG = 0, 20, 0.5, 16, 0.1, 0.5, 16


def bare_fedavg(rounds: int) -> tuple[float, float]:
    """The hand-written loop; returns (wall seconds, final test accuracy)."""
    started = time.perf_counter()
    data = DigitsDataModule(image_size=IMG, seed=SEED)
    data.setup("fit")
    x, y = data.splits["train"].tensors
    tx, ty = data.splits["test"].tensors
    generator = torch.Generator().manual_seed(SEED * 1_000_003 + PARTITION_SEED)
    parts = Dirichlet(0.5, 10)(y, CLIENTS, generator)
    torch.manual_seed(SEED)
    model = create_model({"name": "test_resnet", "img_size": IMG}, 10)
    global_state = copy.deepcopy(model.state_dict())
    per_round = round(FRACTION * CLIENTS)
    for r in range(rounds):
        order = torch.randperm(CLIENTS, generator=stream(SEED, r, -1, SAMPLE))
        states, sizes = [], []
        for k in sorted(order[:per_round].tolist()):
            model.load_state_dict(global_state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
            cx, cy = x[parts[k]], y[parts[k]]
            for index in torch.randperm(len(cy)).split(BATCH):
                if len(index) < 2:
                    continue
                opt.zero_grad()
                F.cross_entropy(model(cx[index]), cy[index]).backward()
                opt.step()
            states.append({n: v.clone() for n, v in model.state_dict().items()})
            sizes.append(len(cy))
        total = sum(sizes)
        for name, value in global_state.items():
            if value.is_floating_point():
                value.copy_(sum(s[name] * (n / total) for s, n in zip(states, sizes, strict=True)))
        model.load_state_dict(global_state)
        model.eval()
        with torch.inference_mode():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
    return time.perf_counter() - started, acc


def runner_fedavg(rounds: int) -> tuple[float, float]:
    """This runner through the CLI; returns (the run's wall seconds, final test accuracy)."""
    with TemporaryDirectory() as out:
        command = [
            sys.executable, "cli.py", f"paths.output_root={out}", "paradigm=federated",
            "backbone=test_resnet", f"backbone.img_size={IMG}", f"seed={SEED}",
            f"paradigm.rounds={rounds}", f"paradigm.num_clients={CLIENTS}",
            f"paradigm.fraction={FRACTION}", f"paradigm.batch_size={BATCH}",
            f"paradigm.optimizer.lr={LR}", f"paradigm.optimizer.momentum={MOMENTUM}",
            "paradigm.progress=false",
        ]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        summary = json.loads(next(Path(out).glob("federated/*/*/summary.json")).read_text())
    return summary["wall_time_s"], summary["metrics"]["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bare, runner = [], []
    for _ in range(args.repeats):
        runner.append(runner_fedavg(args.rounds))
        bare.append(bare_fedavg(args.rounds))
    best_bare, best_runner = min(bare), min(runner)
    ratio = best_runner[0] / best_bare[0]
    print(
        f"FedAvg, digits, {CLIENTS} clients, fraction {FRACTION}, {args.rounds} rounds (1 thread)"
    )
    print(f"{'loop':<12}{'wall s':>10}{'test acc':>10}")
    print(f"{'bare torch':<12}{best_bare[0]:>10.2f}{best_bare[1]:>10.4f}")
    print(f"{'runner':<12}{best_runner[0]:>10.2f}{best_runner[1]:>10.4f}")
    print(f"runner / bare wall time: {ratio:.2f}x (target < 1.3x)")
    record = {
        "rounds": args.rounds,
        "bare_s": round(best_bare[0], 3),
        "runner_s": round(best_runner[0], 3),
        "ratio": round(ratio, 3),
        "bare_acc": best_bare[1],
        "runner_acc": best_runner[1],
    }
    write_result("federated_speed", record)


if __name__ == "__main__":
    main()
