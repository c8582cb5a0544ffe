"""Images listed in a CSV file: one path column and one or more label columns (tasks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.images import SPLITS, Files, ImageDataModule, Labelled, label_index
from paradigms.runner.errors import ConfigError


class CsvDataModule(ImageDataModule):
    """Rows of ``csv``: ``path_column`` (relative to ``root``) and ``label_columns``.

    Each label column is a task; an empty cell is a missing label (``IGNORE``; with one task
    the row is dropped). ``split_column`` (optional) assigns rows to train/val/test; splits it
    does not name are carved out of train. Config keys: root, csv, path_column,
    label_columns, split_column, plus those of ``ImageDataModule``. Raises ConfigError for a
    missing file or column, or unknown split names.
    """

    def __init__(
        self,
        root: str,
        csv: str,
        path_column: str = "path",
        label_columns: list[str] | str = "label",
        split_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.csv = Path(csv).expanduser()
        self.path_column = path_column
        self.label_columns = (
            [label_columns] if isinstance(label_columns, str) else list(label_columns)
        )
        self.split_column = split_column

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str]]]:
        rows = self._rows()
        paths = [str(self.root / row[self.path_column]) for row in rows]
        columns, tasks = [], {}
        for column in self.label_columns:
            labels, tasks[column] = label_index([row[column] for row in rows])
            columns.append(labels)
        labels = columns[0] if len(columns) == 1 else np.stack(columns, axis=1)
        everything = Labelled(Files(paths), labels)
        if self.split_column is None:
            return {"all": everything}, tasks
        names = np.array([row[self.split_column] for row in rows])
        unknown = sorted(set(names) - set(SPLITS))
        if unknown:
            raise ConfigError(
                "data.split_column",
                self.split_column,
                f"holds {unknown[:3]}",
                "use train, val or test in that column",
            )
        return {
            s: everything.subset(np.flatnonzero(names == s)) for s in SPLITS if (names == s).any()
        }, tasks

    def _rows(self) -> list[dict[str, str]]:
        if not self.csv.is_file():
            raise ConfigError(
                "data.csv", str(self.csv), "no such file", "give the CSV that lists the images"
            )
        if not self.root.is_dir():
            raise ConfigError(
                "data.root",
                str(self.root),
                "no such folder",
                "give the folder the CSV's paths are relative to",
            )
        with self.csv.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
        wanted = {self.path_column: "data.path_column", self.split_column: "data.split_column"}
        wanted.update({column: "data.label_columns" for column in self.label_columns})
        for column, key in wanted.items():
            if column is not None and column not in header:
                raise ConfigError(
                    key, column, f"{self.csv} has no such column", f"use one of {header}"
                )
        if not rows:
            raise ConfigError("data.csv", str(self.csv), "it lists no images", "add rows")
        return rows
