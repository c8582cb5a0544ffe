"""Lightning's CSVLogger, made to keep its file across a resume.

Lightning deletes ``metrics.csv`` whenever its folder is not empty, which loses the history
of a resumed run. This logger appends instead, after dropping the rows logged past the
checkpoint being resumed (they will be logged again).
"""

from __future__ import annotations

import csv
import os

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keeps the existing file (Lightning's writer deletes it)."""

    def save(self) -> None:
        # The file may have grown since this writer was made (a resumed run, or a writer
        # pickled into ddp_spawn's processes): its header is the truth about its columns.
        if self.metrics and os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                header = csv.DictReader(file).fieldnames or []
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))
        super().save()


class ResumableCSVLogger(CSVLogger):
    """Writes ``<save_dir>/metrics.csv`` and appends to it when a run resumes."""

    def __init__(self, save_dir: str, **kwargs) -> None:
        super().__init__(save_dir=save_dir, name="", version="", **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def drop_rows_after(self, global_step: int) -> None:
        """Removes rows logged after ``global_step`` optimizer steps (a resume point)."""
        path = os.path.join(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        if not os.path.isfile(path):
            return
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            keys, rows = reader.fieldnames or [], list(reader)
        kept = [row for row in rows if int(row["step"]) < global_step]
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(kept)
