"""Runs one training stage: fit a LightningModule, validate and test its best checkpoint,
export it.

Every paradigm that trains centrally goes through ``Stages.fit_and_test``, so checkpoints,
loggers, resume, seeding and the exported ``model.safetensors`` work the same everywhere.
A stage owns a directory; a finished stage leaves ``results.json`` there, so resuming a run
skips the stages that completed and continues the interrupted one from its last checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import Callback

from paradigms.models.backbone import export_model
from paradigms.runner.console import stage_header
from paradigms.runner.csv_logger import ResumableCSVLogger
from paradigms.runner.errors import ConfigError, Interrupted
from paradigms.runner.guards import EpochSeed, NonFiniteGuard
from paradigms.runner.tracking import build_loggers, close

RESULTS = "results.json"
CONFUSION = "confusion_matrix.json"
LAST_CHECKPOINT = "last.ckpt"


def barrier() -> None:
    """Waits for every process of a distributed run (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@dataclass
class Stages:
    """What a paradigm needs to train: the trainer, callback and logger configs, the seed,
    whether to resume stages found on disk, for the trackers the run directory and the
    hyper-parameters (the resolved config) each stage's tracker run records, and what a
    non-finite training loss does (``stop`` or ``skip``)."""

    trainer: dict[str, Any]
    callbacks: dict[str, Any]
    loggers: dict[str, Any]
    seed: int
    resume: bool = False
    run_dir: Path | None = None
    hparams: dict[str, Any] | None = None
    nonfinite: str = "stop"
    resume_from: Path | None = None  # resume=<a .ckpt file>: its stage continues from it
    summarized: bool = field(default=False, init=False)  # the model summary shows once a run

    def __post_init__(self) -> None:
        if self.resume_from is not None and (self.resume_from.parent.parent / RESULTS).is_file():
            raise ConfigError(
                "resume",
                str(self.resume_from),
                "the stage of this checkpoint has finished; it is not trained again",
                "resume=<the run directory>, or a checkpoint of a stage without results.json",
            )

    def checkpoint(self, stage_dir: Path) -> str | None:
        """What a stage continues from: the chosen checkpoint when it is this stage's, else
        its ``last.ckpt`` when the run resumes; None to start afresh."""
        checkpoints = stage_dir / "checkpoints"
        if self.resume_from is not None and self.resume_from.parent == checkpoints.resolve():
            return str(self.resume_from)
        last = checkpoints / LAST_CHECKPOINT
        return str(last) if self.resume and last.is_file() else None

    def title(self, stage_dir: Path) -> str:
        """A stage's name: its directory under the run directory (``model`` for the run's);
        a stage outside it is a cached one (a source stage), named by its cache folder."""
        if self.run_dir is not None and stage_dir.is_relative_to(self.run_dir):
            return (
                str(stage_dir.relative_to(self.run_dir)) if stage_dir != self.run_dir else "model"
            )
        return f"{stage_dir.parent.name}, cached in {stage_dir.parent}"

    def trainer_for(self, stage_dir: Path, monitor: str, mode: str, **overrides: Any) -> pl.Trainer:
        """A Trainer writing checkpoints and logs under ``stage_dir``."""
        callbacks: list[Callback] = [EpochSeed(self.seed), NonFiniteGuard(self.nonfinite)]
        for spec in self.callbacks.values():
            if spec is None:
                continue
            if spec["_target_"].endswith("LearningRateMonitor") and not any(self.loggers.values()):
                continue  # it needs a logger to write to (logger=none)
            if spec["_target_"].endswith("ModelSummary") and self.summarized:
                continue
            if spec["_target_"].endswith("ModelCheckpoint"):
                spec = {
                    **spec,
                    "dirpath": str(stage_dir / "checkpoints"),
                    "monitor": monitor,
                    "mode": mode,
                }
            elif spec["_target_"].endswith("EarlyStopping"):
                spec = {**spec, "monitor": monitor, "mode": mode}
            callbacks.append(instantiate(spec))
        loggers = build_loggers(self.loggers, stage_dir, self.run_dir, self.hparams)
        options = {**self.trainer, **overrides}
        return instantiate(
            options, callbacks=callbacks, logger=loggers or False, default_root_dir=str(stage_dir)
        )

    def header(self, stage_dir: Path, detail: str) -> None:
        """The stage's one line on the console (rank 0 of a distributed run)."""
        if pl.utilities.rank_zero_only.rank == 0:
            stage_header(self.title(stage_dir), detail)

    def fit_and_test(
        self,
        module: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        stage_dir: Path,
        monitor: str = "val/acc",
        mode: str = "max",
        meta: dict[str, Any] | None = None,
        export: torch.nn.Module | None = None,
        **overrides: Any,
    ) -> dict[str, float]:
        """Fits, validates and tests the best checkpoint, exports its model (or ``export``, a
        model that contains the trained one); returns its ``val/*`` and ``test/*`` metrics."""
        done = stage_dir / RESULTS
        if done.is_file():
            self.header(stage_dir, "done before: its results are reused")
            return json.loads(done.read_text())
        trainer = self.trainer_for(stage_dir, monitor, mode, **overrides)
        ckpt_path = self.checkpoint(stage_dir)
        epochs = f"{trainer.max_epochs} epoch" + ("s" if trainer.max_epochs != 1 else "")
        self.header(
            stage_dir, epochs + (f", resumed from {Path(ckpt_path).name}" if ckpt_path else "")
        )
        if ckpt_path:
            step = torch.load(ckpt_path, map_location="cpu", weights_only=True)["global_step"]
            for logger in trainer.loggers:
                if isinstance(logger, ResumableCSVLogger) and trainer.is_global_zero:
                    logger.drop_rows_after(step)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            self.summarized = True
        except (KeyboardInterrupt, SystemExit) as stop:  # Lightning exits on Ctrl-C and SIGTERM
            signal_name = "SIGTERM" if trainer.received_sigterm else "SIGINT"
            raise Interrupted(self.run_dir or stage_dir, signal_name) from stop
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        close(trainer.loggers)
        metrics = {**selected_validation(trainer, module, datamodule, best), **as_floats(results)}
        if trainer.is_global_zero:
            if best:  # under ddp_spawn the test ran in other processes, not on this module
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.load_state_dict(state)
            save_confusion(module, stage_dir)
            export_model(module.model if export is None else export, stage_dir, meta or {})
            done.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        trainer.strategy.barrier()
        return metrics

    def test_only(
        self, module: pl.LightningModule, datamodule: pl.LightningDataModule, stage_dir: Path
    ) -> dict[str, float]:
        """Validates and tests ``module`` as it is, without training (e.g. a source model on
        the target)."""
        trainer = self.trainer_for(stage_dir, "val/acc", "max")
        self.header(stage_dir, "test only")
        results = trainer.test(module, datamodule=datamodule, verbose=False)
        close(trainer.loggers)
        if trainer.is_global_zero:
            save_confusion(module, stage_dir)
        return {**selected_validation(trainer, module, datamodule, ""), **as_floats(results)}


def as_floats(results: list[dict[str, Any]]) -> dict[str, float]:
    """What ``trainer.validate`` or ``trainer.test`` returned, as plain floats."""
    return {k: float(v) for k, v in results[0].items()}


def selected_validation(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, best: str
) -> dict[str, float]:
    """The ``val/*`` metrics of the checkpoint selection kept (``best``; the module as it is
    when there is none): the same validation pass, on the same weights, that selection saw.
    Not logged again, so the stage's curves keep one point per epoch, nor shown."""
    loggers, trainer.loggers = trainer.loggers, []
    bar = trainer.progress_bar_callback
    if bar is not None:
        bar.disable()
    try:
        results = trainer.validate(
            module, datamodule=datamodule, ckpt_path=best or None, verbose=False
        )
    finally:
        trainer.loggers = loggers
        if bar is not None:
            bar.enable()
    return as_floats(results)


def save_confusion(module: pl.LightningModule, stage_dir: Path) -> None:
    """Keeps the test confusion matrix a module measured (rows: true class) beside the
    stage's results, for the plots."""
    matrix = getattr(module, "test_confusion_matrix", None)
    if matrix is not None:
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / CONFUSION).write_text(json.dumps(matrix.tolist()))
