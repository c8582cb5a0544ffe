"""Settings of the datamodules (``conf/data/``), checked before torch loads (see
``paradigms.runner.validation``). A datamodule's schema has its class's name. What depends on
the files themselves (a class folder without images, a CSV column that does not exist) is
checked by the datamodule when it reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Schema, flag, join, number, optional, whole


class Data(Schema):
    """What every datamodule has: batches and a seeded split."""

    batch_size = whole(1, example=64)
    eval_batch_size = whole(1, example=256)
    val_fraction = number(0, 1, open_low=True, open_high=True, example=0.15)
    test_fraction = number(0, 1, open_low=True, open_high=True, example=0.15)
    train_per_class = optional(whole(1, example=10))
    val_per_class = optional(whole(1, example=10))
    split_seed = whole(0, example=0)

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        val, test = node.get("val_fraction", 0), node.get("test_fraction", 0)
        if val + test >= 1:
            raise ConfigError(
                join(at, "val_fraction"),
                val,
                "val and test fractions leave no training data",
                f"keep {join(at, 'val_fraction')} + {join(at, 'test_fraction')} below 1",
            )


class DigitsDataModule(Data):
    """``conf/data/digits.yaml``: scikit-learn's digits in memory."""

    image_size = whole(1, example=32)
    in_chans = whole(1, example=3)
    translate = number(0, 1, open_high=True, example=0.1)


MultiTaskDigitsDataModule = DigitsDataModule


class Files(Data):
    """A datamodule that reads files under ``root`` (unless it is about to download them)."""

    image_size = optional(whole(1, example=224))
    in_memory = flag()

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        super().relations(node, at)
        root, downloads = node.get("root"), node.get("download") is True
        if root is not None and not downloads and not Path(str(root)).expanduser().is_dir():
            raise ConfigError(
                join(at, "root"), root, "no such folder", "give the folder holding your images"
            )


ImageFolderDataModule = CsvDataModule = TorchvisionDataModule = HFDataModule = Files
