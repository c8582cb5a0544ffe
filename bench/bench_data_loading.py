"""Data-loading throughput of data=image_folder with the default transforms: 0 vs 2 workers,
and data.in_memory=true (every split decoded once, with the evaluation transform).

Writes an image folder of digits (PNG, upscaled to --file-size px) to a temp dir, then times
full passes of the training loader (timm augmentation; in memory: none) and the validation
loader (resize and centre crop), in images/s; the in-memory column also reports its one-time
decode. Decoding and transforms run on the CPU, so the figures depend on how many cores are free.
python bench/bench_data_loading.py [--per-class 100] [--image-size 224] [--epochs 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result
from PIL import Image
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits

from datamodules.image_folder import ImageFolderDataModule


def write_folder(root: Path, per_class: int, file_size: int) -> int:
    """root/<digit>/<n>.png from scikit-learn's digits, upscaled; returns the image count."""
    digits = load_digits()
    count = 0
    for label in range(10):
        for n in np.flatnonzero(digits.target == label)[:per_class]:
            pixels = (digits.images[n] * 255 / 16).astype(np.uint8)
            path = root / str(label) / f"{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).convert("RGB").resize((file_size, file_size)).save(path)
            count += 1
    return count


def throughput(
    root: Path, workers: int, split: str, args: argparse.Namespace, in_memory: bool = False
) -> tuple[float, float]:
    """Images per second over ``args.epochs`` passes of one loader (after one warm-up batch),
    and the seconds ``setup`` took (the decode, in memory)."""
    dm = ImageFolderDataModule(
        root=str(root),
        backbone=args.backbone,
        image_size=args.image_size,
        batch_size=args.batch_size,
        eval_batch_size=args.batch_size,
        val_fraction=0.45,  # a validation split as large as the training one, to time both
        test_fraction=0.05,
        loader={"num_workers": workers, "pin_memory": False, "persistent_workers": workers > 0},
        in_memory=in_memory,
    )
    started = time.perf_counter()
    dm.setup()
    setup = time.perf_counter() - started
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    next(iter(loader))
    images, started = 0, time.perf_counter()
    for epoch in range(args.epochs):
        loader.sampler.set_epoch(epoch)
        images += sum(len(labels) for _, labels in loader)
    return images / (time.perf_counter() - started), setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=100, help="images written per class")
    parser.add_argument("--file-size", type=int, default=256, help="side of the PNG files, px")
    parser.add_argument("--image-size", type=int, default=224, help="model input size, px")
    parser.add_argument("--backbone", default="resnet18", help="timm name giving mean/std/crop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="timed passes per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = Table(title="image_folder loading throughput (images/s)")
    columns = [f"{w} workers" for w in args.workers]
    for column in (
        "split",
        *columns,
        "speed-up",
        f"in memory (decoded by {args.workers[-1]} workers)",
    ):
        table.add_column(column, justify="right")
    record = {"args": vars(args), "python": platform.python_version(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        count = write_folder(Path(tmp), args.per_class, args.file_size)
        record["images"] = count
        for split in ("train", "eval"):
            rates = [throughput(Path(tmp), w, split, args)[0] for w in args.workers]
            memory, decode = throughput(Path(tmp), args.workers[-1], split, args, in_memory=True)
            record[split] = dict(zip(map(str, args.workers), rates, strict=True))
            record[split] |= {"in_memory": memory, "in_memory_decode_s": decode}
            speedup = f"{rates[-1] / rates[0]:.2f}x"
            cached = f"{memory:,.0f} (decode {decode:.1f} s)"
            table.add_row(split, *(f"{r:,.0f}" for r in rates), speedup, cached)
    Console().print(table)
    write_result("data_loading", record)


if __name__ == "__main__":
    main()
