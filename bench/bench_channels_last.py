"""Claim: on a CPU, channels-last weights make a training step of a model with grouped or
depthwise convolutions much faster, and gain nothing for plain ResNets and ViTs; this is why
``callbacks.accelerate.channels_last: auto`` applies it on a CPU to the former only.

Each model trains SGD steps on a batch of 32 random 1-channel 32 px images (digits' shape at
``backbone.img_size=32``) and evaluates the same batch, in standard and in channels-last
layout, alternating, on ``--threads`` torch threads; the figures are medians over repeats.

    python bench/bench_channels_last.py [--repeats 5] [--threads 1] [--models a,b,...]
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from common import median_time, write_result
from rich.console import Console
from rich.table import Table

from paradigms.runner.accelerate import accelerate, wants_channels_last

MODELS = "mobilenetv3_small_050,lcnet_050,efficientnet_b0,regnetx_002,convnext_atto,resnet10t,test_resnet,test_vit"  # fmt: skip


def step_times(name: str, channels_last: bool, steps: int) -> tuple[float, float]:
    """Milliseconds per training step and per evaluation of one batch (after 3 warm-ups)."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1)
    accelerate(model, torch.device("cpu"), channels_last=channels_last)
    x, y = torch.randn(32, 1, 32, 32), torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for i in range(steps + 3):
        if i == 3:
            started = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    train = (time.perf_counter() - started) / steps * 1000
    model.eval()
    with torch.inference_mode():
        for i in range(steps + 3):
            if i == 3:
                started = time.perf_counter()
            model(x)
    return train, (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(title=f"channels-last on a CPU, {args.threads} thread(s), batch 32, 32 px, "
                  f"median of {args.repeats}")  # fmt: skip
    for column in ("model", "auto applies it", "train ms std", "train ms cl", "train x",
                   "eval ms std", "eval ms cl", "eval x"):  # fmt: skip
        table.add_column(column)
    for name in args.models.split(","):
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for layout in (False, True):
                runs[layout].append(step_times(name, layout, args.steps))
        train = {k: median_time([t for t, _ in v]) for k, v in runs.items()}
        evaluation = {k: median_time([e for _, e in v]) for k, v in runs.items()}
        auto = wants_channels_last(timm.create_model(name), torch.device("cpu"), "auto")
        record = {"model": name, "threads": args.threads, "auto": auto,
                  "train_ms": train[False], "train_ms_channels_last": train[True],
                  "eval_ms": evaluation[False], "eval_ms_channels_last": evaluation[True]}  # fmt: skip
        write_result("channels_last_cpu", record)
        table.add_row(name, "yes" if auto else "no", f"{train[False]:.1f}", f"{train[True]:.1f}",
                      f"{train[False] / train[True]:.2f}", f"{evaluation[False]:.1f}",
                      f"{evaluation[True]:.1f}", f"{evaluation[False] / evaluation[True]:.2f}")  # fmt: skip
        print(record, flush=True)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
