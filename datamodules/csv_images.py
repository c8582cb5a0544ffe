"""Images listed in a CSV file: a path column and one label column per task.

The one reader of tables, for every paradigm. A single-label paradigm trains on one label
column of class names (or numbers), mapped to indices 0..n-1 in sorted order; a row whose
label cell is empty is dropped. The multi-task paradigm sets ``tasks`` to the label columns
it trains, and each batch is ``(images, label_1, ..., label_T)`` in that order, as float:
a column of numbers as written (class ids 0..n-1, 0/1, or real values), a column of names as
class indices; an empty cell is a missing label (NaN, skipped by that task's loss and
metrics; ``datamodules.labels``). Images are read from their files every epoch (only paths
and labels are held), so a table of 50,000 images fits where its pixels would not;
``in_memory=true`` decodes them once into tensors, for small tables or for paradigms that
need tensors.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.images import SPLITS, Files, ImageDataModule, Labelled
from datamodules.labels import label_index, label_values
from paradigms.runner.errors import ConfigError


class CsvDataModule(ImageDataModule):
    """Rows of ``csv``: ``path_column`` (relative to ``root``) and the label columns.

    Config keys: root, csv (a path as the shell sees it), path_column, label_columns (one
    task each), split_column (optional: train | val | test per row; splits it does not name
    are carved out of train), tasks (set by the multi-task paradigm: the label columns it
    trains, in its order, replacing label_columns), plus those of ``ImageDataModule``.
    Raises ConfigError for a missing file, folder or column, or unknown split names.
    """

    def __init__(
        self,
        root: str,
        csv: str,
        path_column: str = "path",
        label_columns: list[str] | str = "label",
        split_column: str | None = None,
        tasks: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.csv = Path(csv).expanduser()
        self.path_column = path_column
        self.multitask = tasks is not None
        columns = tasks if self.multitask else label_columns
        self.label_columns = [columns] if isinstance(columns, str) else list(columns)
        self.split_column = split_column

    @property
    def task_outputs(self) -> dict[str, int | None]:
        """The head outputs each task needs: its number of classes, or None where the file
        cannot tell (numbers, or two names: a binary task or two classes)."""
        _, tasks = self.read()
        return {
            name: None if not names or len(names) == 2 else len(names)
            for name, names in tasks.items()
        }

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str] | None]]:
        rows = self._rows()
        paths = [str(self.root / row[self.path_column]) for row in rows]
        encode = label_values if self.multitask else label_index
        columns, tasks = [], {}
        for column in self.label_columns:
            labels, tasks[column] = encode([row[column] for row in rows])
            columns.append(labels)
        labels = columns[0] if len(columns) == 1 else np.stack(columns, axis=1)
        others = [c for c in rows[0] if c != self.path_column]
        columns = {c: np.array([row[c] for row in rows]) for c in others}
        everything = Labelled(Files(paths), labels, columns=columns)
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
        labels = "paradigm.tasks" if self.multitask else "data.label_columns"
        wanted = {self.path_column: "data.path_column", self.split_column: "data.split_column"}
        wanted.update({column: labels for column in self.label_columns})
        for column, key in wanted.items():
            if column is not None and column not in header:
                raise ConfigError(
                    key, column, f"{self.csv} has no such column", f"use one of {header}"
                )
        if not rows:
            raise ConfigError("data.csv", str(self.csv), "it lists no images", "add rows")
        return rows
