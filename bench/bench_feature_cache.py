"""Per-epoch speed of transfer with cached features vs through the frozen backbone.

Both paths train the same new head on digits 5-9 with the same seed and batches; the cached
path computes the frozen backbone's features once (timed separately: it is part of its
first epoch). Claim: every epoch after the first is at least 10x faster with the cache.
The two paths alternate ``--repeats`` times and the medians are compared, so a busy machine
slows both alike.

    python bench/bench_feature_cache.py [--backbone resnet10t] [--epochs 8] [--repeats 3] [--train-per-class 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
from common import write_result
from rich.console import Console
from rich.table import Table

from datamodules.digits import DigitsDataModule
from paradigms.models.classifier import ClassificationModule
from paradigms.transfer.features import FeatureData
from paradigms.transfer.paradigm import Transfer

OPTIMIZER = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01}
SCHEDULER = {"name": "cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.01}


class EpochTimer(pl.Callback):
    """Wall time of each training epoch, its validation included."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter() - self.started)


def train(args: argparse.Namespace, cached: bool) -> tuple[list[float], float, float]:
    """(epoch times, feature caching time, final val accuracy) of one path."""
    pl.seed_everything(0, verbose=False)
    spec = {"name": args.backbone, "in_chans": 3, "img_size": 32}
    model, _ = Transfer(OPTIMIZER, SCHEDULER, baseline=None).build(spec, "none", 5)
    data = DigitsDataModule(
        classes=[5, 6, 7, 8, 9], train_per_class=args.train_per_class, batch_size=16
    )
    data.setup("fit")
    started = time.perf_counter()
    if cached:
        data = FeatureData(data, model)
    caching = time.perf_counter() - started
    module = ClassificationModule(
        model.get_classifier() if cached else model, 5, OPTIMIZER, SCHEDULER
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=True,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=data)
    return timer.times, caching, float(trainer.callback_metrics["val/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--train-per-class", type=lambda v: None if v == "all" else int(v), default=10
    )
    args = parser.parse_args()
    runs: dict[bool, list[tuple[list[float], float, float]]] = {False: [], True: []}
    for _ in range(args.repeats):
        for cached_path in (False, True):
            runs[cached_path].append(train(args, cached=cached_path))
    acc_through, acc_cached = runs[False][0][2], runs[True][0][2]
    first_through = statistics.median(r[0][0] for r in runs[False])
    first_cached = statistics.median(r[0][0] + r[1] for r in runs[True])
    caching = statistics.median(r[1] for r in runs[True])
    later_through = statistics.median(t for r in runs[False] for t in r[0][1:])
    later_cached = statistics.median(t for r in runs[True] for t in r[0][1:])
    speedup = later_through / later_cached
    table = Table(
        title=f"feature cache: {args.backbone}, digits 5-9, {args.train_per_class} labels/class"
    )
    for column in ("path", "caching s", "epoch 1 s", "later epochs s (median)", "val/acc"):
        table.add_column(column, justify="right")
    table.add_row(
        "frozen backbone", "-", f"{first_through:.3f}", f"{later_through:.4f}", f"{acc_through:.4f}"
    )
    table.add_row(
        "cached features",
        f"{caching:.3f}",
        f"{first_cached:.3f}",
        f"{later_cached:.4f}",
        f"{acc_cached:.4f}",
    )
    console = Console()
    console.print(table)
    console.print(f"  speed-up per epoch after the first: [bold]{speedup:.1f}x[/] (target >= 10x)")
    record = {
        "claim": "cached features: each epoch after the first >= 10x faster",
        "backbone": args.backbone,
        "train_per_class": args.train_per_class,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "epoch_s_through": [r[0] for r in runs[False]],
        "epoch_s_cached": [r[0] for r in runs[True]],
        "later_epoch_s_median": [round(later_through, 4), round(later_cached, 4)],
        "caching_s": round(caching, 4),
        "speedup": round(speedup, 2),
        "val_acc": [acc_through, acc_cached],
    }
    write_result("feature_cache", record)


if __name__ == "__main__":
    main()
