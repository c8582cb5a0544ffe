"""Lightning's TensorBoardLogger, writing one event file per stage.

Lightning finalizes its loggers at the end of every ``fit`` and ``test``, and TensorBoard's
writer, once closed, opens a new event file at the next value: a stage left two files (three
in the run directory, where the summary step made its own logger). This one only flushes
there and is closed by ``tracking.close`` when the stage is done.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger

SUBDIR = "tensorboard"  # the stage directory's folder of event files


class StageTensorBoardLogger(TensorBoardLogger):
    """Event files in ``<save_dir>/tensorboard/``, one per stage (a resumed stage adds one)."""

    def __init__(self, save_dir: str, **kwargs: Any) -> None:
        # no version_N folder (one stage, one directory), no placeholder hp_metric
        super().__init__(save_dir, name=SUBDIR, version="", default_hp_metric=False, **kwargs)

    def finalize(self, status: str) -> None:
        """Flushes and saves ``hparams.yaml``, keeping the writer (its file) open."""
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()

    def end_stage(self) -> None:
        """Closes the writer: the stage is done."""
        super().finalize("success")
