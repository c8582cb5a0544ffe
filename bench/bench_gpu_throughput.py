"""Claim: on a GPU the runner trains as fast as a bare PyTorch loop, and shows what bf16,
channels_last and torch.compile give (resnet50, 224 px, synthetic data on the device).

Without CUDA it says so and exits 0 (a JSON line records the skip), so it runs anywhere.

    python bench/bench_gpu_throughput.py [--model resnet50] [--batch-size 128] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
from common import write_result
from rich.console import Console
from rich.table import Table

from datamodules.loading import TensorBatches, tensor_loader
from paradigms.models.backbone import create_model
from paradigms.models.classifier import ClassificationModule
from paradigms.runner.accelerate import Accelerate

OPTIMIZER = {"name": "sgd", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9}
SCHEDULE = {"name": "constant", "warmup_fraction": 0.0}


class Throughput(pl.Callback):
    """Images per second over the steps after ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.images, self.started = warmup, 0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            torch.cuda.synchronize()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += len(batch[0])

    def rate(self) -> float:
        torch.cuda.synchronize()
        return self.images / (time.perf_counter() - self.started)


def synthetic(args: argparse.Namespace) -> TensorBatches:
    n = args.batch_size * args.steps
    x = torch.randn(n, 3, args.size, args.size, device="cuda")
    return TensorBatches(x, torch.randint(0, 1000, (n,), device="cuda"))


def runner(args: argparse.Namespace, channels_last: bool, compile: bool) -> float:
    model = create_model({"name": args.model}, 1000)
    module = ClassificationModule(model, 1000, OPTIMIZER, SCHEDULE)
    meter = Throughput(warmup=10)
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        callbacks=[meter, Accelerate(compile=compile, channels_last=channels_last)],
    )
    trainer.fit(module, train_dataloaders=tensor_loader(synthetic(args), args.batch_size, True, 0))
    return meter.rate()


def bare(args: argparse.Namespace, channels_last: bool, compile: bool) -> float:
    model = create_model({"name": args.model}, 1000).cuda()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device="cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,), device="cuda")
    for step in range(args.steps):
        if step == 10:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return args.batch_size * (args.steps - 10) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "skipped: no CUDA device on this machine (the CPU comparison is bench_runner_overhead.py)"
        )
        write_result("gpu_throughput", {"skipped": "no CUDA device"})
        return
    table = Table(title=f"{args.model}, {args.size} px, bf16, batch {args.batch_size} (img/s)")
    for column in ("channels_last", "compile", "bare loop", "runner", "runner / bare"):
        table.add_column(column)
    rows = []
    for channels_last, compile in ((False, False), (True, False), (True, True)):
        b, r = bare(args, channels_last, compile), runner(args, channels_last, compile)
        rows.append({"channels_last": channels_last, "compile": compile, "bare": b, "runner": r})
        table.add_row(str(channels_last), str(compile), f"{b:,.0f}", f"{r:,.0f}", f"{r / b:.3f}")
    Console().print(table)
    write_result(
        "gpu_throughput",
        {"model": args.model, "device": torch.cuda.get_device_name(), "rows": rows},
    )


if __name__ == "__main__":
    main()
