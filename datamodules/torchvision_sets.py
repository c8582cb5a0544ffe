"""Any torchvision classification dataset by name (CIFAR10/100, MNIST, FashionMNIST, SVHN, ...).

Downloading is opt-in (``download: true``); offline, a dataset whose files are not under
``root`` stops with one line saying where to put them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torchvision.datasets

from datamodules.images import ImageDataModule, Labelled
from paradigms.runner.errors import ConfigError

# How a split is asked for: ``train=True/False`` (CIFAR, MNIST) or ``split=<name>``.
SPLIT_NAMES = {"train": "train", "val": "val", "test": "test"}


class Indexed:
    """Image i of a torchvision dataset (built without transforms: items are PIL images)."""

    def __init__(self, dataset: Any, split: str) -> None:
        self.dataset = dataset
        self.split = split

    def load(self, i: int) -> Any:
        return self.dataset[i][0]

    def name(self, i: int) -> str:
        return f"{type(self.dataset).__name__} {self.split} item {i}"


class TorchvisionDataModule(ImageDataModule):
    """``torchvision.datasets.<name>(root, train|split, download)``; the splits it lacks are
    carved out of its training split.

    Config keys: name, root, download, plus those of ``ImageDataModule``. Raises ConfigError
    for an unknown name or missing files.
    """

    def __init__(self, name: str, root: str, download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.root = Path(root).expanduser()
        self.download = download

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str]]]:
        cls = getattr(torchvision.datasets, self.name, None)
        if not inspect.isclass(cls):
            raise ConfigError(
                "data.name",
                self.name,
                "torchvision.datasets has no such dataset",
                "e.g. CIFAR10, CIFAR100, MNIST, FashionMNIST, SVHN",
            )
        params = inspect.signature(cls).parameters
        found, classes = {}, None
        for split in ("train", "val", "test"):
            if "train" in params:
                if split == "val":
                    continue
                options = {"train": split == "train"}
            else:
                options = {"split": split}
            try:
                dataset = cls(str(self.root), download=self.download, **options)
            except ValueError:  # this dataset has no such split
                continue
            except RuntimeError as error:
                raise ConfigError(
                    "data.root",
                    str(self.root),
                    f"torchvision found no {self.name} files there ({error})",
                    f"put the files as torchvision.datasets.{self.name} lays them out under {self.root}, or set data.download=true with a network",
                ) from error
            labels = _targets(dataset)
            classes = classes or [str(c) for c in getattr(dataset, "classes", [])]
            found[split] = Labelled(Indexed(dataset, split), labels)
        if "train" not in found:
            raise ConfigError(
                "data.name", self.name, "it has no training split", "pick a classification dataset"
            )
        classes = classes or [
            str(c) for c in range(int(max(v.labels.max() for v in found.values())) + 1)
        ]
        return found, {"label": classes}


def _targets(dataset: Any) -> np.ndarray:
    """The labels of a torchvision dataset, without decoding its images when it keeps them."""
    for attribute in ("targets", "labels", "_labels", "y"):
        values = getattr(dataset, attribute, None)
        if values is not None:
            return np.asarray(values, dtype=np.int64)
    return np.array([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)
