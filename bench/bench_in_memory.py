"""Claim: a small dataset held as tensors and batched by indexing beats a per-sample DataLoader.

Same model, data, batch size and optimizer; the only difference is how batches are made:
``tensor_loader`` (one gather per batch) vs a standard DataLoader over a TensorDataset
(a Python call per sample, then collate). Reports images/s of data only and of training.

    python bench/bench_in_memory.py [--backbone test_resnet] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_result
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, TensorDataset

from datamodules.digits import DigitsDataModule
from datamodules.loading import tensor_loader
from paradigms.models.backbone import create_model


def images_per_second(loader, model: torch.nn.Module | None, epochs: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), 1e-3) if model is not None else None
    seen, started = 0, time.perf_counter()
    for epoch in range(epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for x, y in loader:
            seen += len(x)
            if model is not None:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    datamodule = DigitsDataModule()
    datamodule.setup("fit")
    data = datamodule.splits["train"]
    loaders = {
        "tensor_loader (batched indexing)": lambda: tensor_loader(data, args.batch_size, True, 0),
        "DataLoader (per sample)": lambda: DataLoader(
            TensorDataset(*data.tensors), args.batch_size, shuffle=True
        ),
    }
    rows = {}
    for name, make in loaders.items():
        torch.manual_seed(0)
        model = create_model({"name": args.backbone}, 10)
        rows[name] = (
            images_per_second(make(), None, 20),
            images_per_second(make(), model, args.epochs),
        )
    table = Table(title=f"digits in memory, {args.backbone}, batch {args.batch_size}")
    for column in ("loader", "data only (img/s)", "training (img/s)"):
        table.add_column(column)
    for name, (data_only, training) in rows.items():
        table.add_row(name, f"{data_only:,.0f}", f"{training:,.0f}")
    Console().print(table)
    (fast_data, fast_train), (slow_data, slow_train) = rows.values()
    write_result(
        "in_memory",
        {
            "backbone": args.backbone,
            "data_speedup": fast_data / slow_data,
            "training_speedup": fast_train / slow_train,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
