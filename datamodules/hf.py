"""A Hugging Face ``datasets`` dataset: a local directory (``save_to_disk``) or, opt-in, the hub.

Needs the optional extra: ``pip install -e '.[hf]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datamodules.images import ImageDataModule, Labelled
from datamodules.labels import IGNORE, label_index
from paradigms.runner.errors import ConfigError

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}


class Rows:
    """The image column of a ``datasets.Dataset``, decoded to PIL on access."""

    def __init__(self, dataset: Any, column: str, split: str) -> None:
        self.dataset = dataset
        self.column = column
        self.split = split

    def load(self, i: int) -> Any:
        return self.dataset[i][self.column]

    def name(self, i: int) -> str:
        return f"{self.split} row {i}"


class HFDataModule(ImageDataModule):
    """``datasets.load_from_disk(path)`` when ``path`` is a saved dataset, else
    ``datasets.load_dataset(path, config_name)`` (the hub: needs a network). Splits named
    train / validation (or val) / test are used; the others are carved out of train.

    Config keys: path, config_name, image_column, label_column, plus those of
    ``ImageDataModule``. Raises ConfigError when ``datasets`` is not installed, the dataset
    cannot be loaded, or a column is missing.
    """

    def __init__(
        self,
        path: str,
        config_name: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.config_name = config_name
        self.image_column = image_column
        self.label_column = label_column

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str]]]:
        splits = self._load()
        found, names = {}, None
        for key, dataset in splits.items():
            for column in (self.image_column, self.label_column):
                if column not in dataset.column_names:
                    key_name = (
                        "data.image_column" if column == self.image_column else "data.label_column"
                    )
                    raise ConfigError(
                        key_name,
                        column,
                        "the dataset has no such column",
                        f"use one of {dataset.column_names}",
                    )
            feature = dataset.features[self.label_column]
            values = dataset[self.label_column]
            if hasattr(feature, "names"):  # a ClassLabel: indices, -1 or None when missing
                names = names or list(feature.names)
                labels = np.array([IGNORE if v is None or v < 0 else v for v in values])
            else:
                labels, names = label_index(values, names)
            others = [c for c in dataset.column_names if c != self.image_column]
            columns = {c: np.array(dataset[c]) for c in others}
            found[key] = Labelled(Rows(dataset, self.image_column, key), labels, columns=columns)
        return found, {self.label_column: names}

    def _load(self) -> dict[str, Any]:
        try:
            import datasets
        except ImportError as error:
            raise ConfigError(
                "data", "hf", "the datasets package is not installed", "pip install -e '.[hf]'"
            ) from error
        try:
            if Path(self.path).expanduser().is_dir():
                loaded = datasets.load_from_disk(str(Path(self.path).expanduser()))
            else:
                loaded = datasets.load_dataset(self.path, self.config_name)
        except Exception as error:  # offline hub, a folder that is not a dataset, ...
            raise ConfigError(
                "data.path",
                self.path,
                f"datasets could not load it ({type(error).__name__}: {str(error)[:120]})",
                "give a directory written by save_to_disk, or a hub name with a network",
            ) from error
        if isinstance(loaded, datasets.Dataset):
            return {"all": loaded}
        splits = {SPLIT_NAMES[k]: v for k, v in loaded.items() if k in SPLIT_NAMES}
        if "train" not in splits:
            raise ConfigError(
                "data.path",
                self.path,
                f"no train split among {list(loaded)}",
                "save a DatasetDict with a train split",
            )
        return splits
