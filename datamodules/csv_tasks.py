"""Your own multi-task data: an image folder and a CSV with a path column and one column per task.

A minimal, self-contained reader for the multitask paradigm: every image is decoded once,
resized and held in memory, so it suits datasets that fit in RAM. Labels are numbers (class
ids for multiclass, 0/1 for binary, values for regression); an empty cell is a missing label.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from datamodules.loading import TensorBatches, tensor_loader
from paradigms.runner.errors import ConfigError


class CsvTasksDataModule(pl.LightningDataModule):
    """Batches ``(images, label_1, ..., label_T)`` in the order of ``tasks`` (float, NaN =
    missing), split at random by ``split_seed`` into train/val/test.

    Config keys: root (image folder), csv (file; relative to root unless absolute),
    path_column, tasks (the label columns; set by the multitask paradigm), val_fraction,
    test_fraction, split_seed, batch_size, eval_batch_size, image_size, in_chans, mean, std.
    """

    in_memory = True  # every split is held as tensors (paradigms.contract.Needs)

    def __init__(
        self,
        root: str,
        csv: str = "labels.csv",
        path_column: str = "path",
        tasks: list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        image_size: int = 32,
        in_chans: int = 3,
        mean: float = 0.5,
        std: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.csv = self.root / csv
        self.path_column = path_column
        self.tasks = list(tasks or [])
        self.fractions = (val_fraction, test_fraction)
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.image_size = image_size
        self.in_chans = in_chans
        self.mean = mean
        self.std = std
        self.seed = seed
        self.splits: dict[str, TensorBatches] = {}

    def _rows(self) -> list[dict[str, str]]:
        if not self.csv.is_file():
            raise ConfigError(
                "data.csv", str(self.csv), "no such file", "give data.root and data.csv"
            )
        with self.csv.open(newline="") as file:
            rows = list(csv.DictReader(file))
        columns = set(rows[0]) if rows else set()
        for name in [self.path_column, *self.tasks]:
            if name not in columns:
                raise ConfigError(
                    "data.csv",
                    str(self.csv),
                    f"has no column {name!r}",
                    f"columns: {sorted(columns)}",
                )
        return rows

    @property
    def task_outputs(self) -> dict[str, int | None]:
        """Unknown from the file alone (a 0/1 column may be binary or two classes)."""
        return {name: None for name in self.tasks}

    def _image(self, path: str) -> torch.Tensor:
        mode = "L" if self.in_chans == 1 else "RGB"
        with Image.open(self.root / path) as image:
            x = pil_to_tensor(image.convert(mode)).float().div(255.0)
        x = F.interpolate(x[None], size=self.image_size, mode="bilinear", align_corners=False)[0]
        return ((x - self.mean) / self.std).expand(self.in_chans, -1, -1)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        rows = self._rows()
        images = torch.stack([self._image(row[self.path_column]) for row in rows])
        labels = [
            torch.tensor([float(row[t]) if row[t].strip() else float("nan") for row in rows])
            for t in self.tasks
        ]
        order = torch.as_tensor(np.random.default_rng(self.split_seed).permutation(len(rows)))
        val, test = (max(1, round(f * len(rows))) for f in self.fractions)
        parts = {"val": order[:val], "test": order[val : val + test], "train": order[val + test :]}
        for name, idx in parts.items():
            self.splits[name] = TensorBatches(images[idx], *(y[idx] for y in labels))

    def _loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        batch = self.batch_size if shuffle else self.eval_batch_size
        return tensor_loader(self.splits[split], batch, shuffle, self.seed, rank, world)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", shuffle=False)
