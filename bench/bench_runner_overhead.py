"""Claim: one training epoch through this runner costs about what a bare PyTorch loop costs.

Same model (timm), same in-memory digits batches, same batch size, optimizer and schedule.
The runner side is the real path: Hydra-composed config, ClassificationModule, pl.Trainer with
the default callbacks and CSV logger. Reports the median epoch time of each and their ratio.

    python bench/bench_runner_overhead.py [--backbone resnet10t] [--epochs 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import composed, median_time, write_result
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from paradigms.models.backbone import create_model
from paradigms.models.classifier import ClassificationModule
from paradigms.models.optim import build_optimizer, build_schedule
from paradigms.runner.stages import Stages


class EpochTimer(pl.Callback):
    """Wall time of each epoch's training steps: from the epoch's start to its last step's
    end, so validation and checkpointing (which the bare loop does not do) are left out."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        self.times.append(0.0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.times[-1] = time.perf_counter() - self.started


def runner_epochs(cfg: dict, epochs: int) -> list[float]:
    datamodule = instantiate(cfg["data"], seed=0, _convert_="all")
    datamodule.setup("fit")
    paradigm = cfg["paradigm"]
    model = create_model({**cfg["backbone"], "weights": "none"}, datamodule.num_classes)
    module = ClassificationModule(
        model, datamodule.num_classes, paradigm["optimizer"], paradigm["scheduler"]
    )
    stages = Stages(cfg["trainer"], cfg["callbacks"], cfg["logger"], seed=0)
    with tempfile.TemporaryDirectory() as stage_dir:
        trainer = stages.trainer_for(Path(stage_dir), "val/acc", "max", max_epochs=epochs)
        timer = EpochTimer()
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=datamodule)
    return timer.times


def bare_epochs(cfg: dict, epochs: int) -> list[float]:
    datamodule = instantiate(cfg["data"], seed=0, _convert_="all")
    datamodule.setup("fit")
    paradigm = cfg["paradigm"]
    torch.manual_seed(0)
    model = create_model({**cfg["backbone"], "weights": "none"}, datamodule.num_classes)
    loader = datamodule.train_dataloader()
    opt = build_optimizer(model, paradigm["optimizer"])
    schedule = build_schedule(opt, paradigm["scheduler"], epochs * len(loader))
    criterion = torch.nn.CrossEntropyLoss()
    torch.use_deterministic_algorithms(cfg["trainer"]["deterministic"])  # as the Trainer does
    times = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        for x, y in loader:
            loss = criterion(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="config overrides for the runner, e.g. callbacks.rich_progress_bar=null",
    )
    args = parser.parse_args()
    cfg = composed(["paradigm=scratch", f"backbone={args.backbone}", *args.overrides])
    # Alternate so that machine noise hits both sides alike; the first epoch is a warm-up.
    runner, bare = [], []
    for _ in range(2):
        bare += bare_epochs(cfg, args.epochs)[1:]
        runner += runner_epochs(cfg, args.epochs)[1:]
    ratio = median_time(runner) / median_time(bare)
    table = Table(
        title=f"one training epoch, {args.backbone}, digits ({cfg['data']['batch_size']}/batch)"
    )
    for column in ("path", "median epoch (s)", "ratio"):
        table.add_column(column)
    table.add_row("bare PyTorch loop", f"{median_time(bare):.3f}", "1.00")
    table.add_row("paradigms runner", f"{median_time(runner):.3f}", f"{ratio:.3f}")
    Console().print(table)
    path = write_result(
        "runner_overhead",
        {
            "backbone": args.backbone,
            "bare_s": median_time(bare),
            "runner_s": median_time(runner),
            "ratio": ratio,
        },
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
