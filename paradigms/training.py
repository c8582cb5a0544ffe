"""Runs one training stage: fit a LightningModule, test its best checkpoint, export it.

Every paradigm that trains centrally goes through ``Stages.fit_and_test``, so checkpoints,
loggers, resume, seeding and the exported ``model.safetensors`` work the same everywhere.
A stage owns a directory; a finished stage leaves ``results.json`` there, so resuming a run
skips the stages that completed and continues the interrupted one from its last checkpoint.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import Callback

from paradigms.backbone import export_model
from paradigms.csv_logger import ResumableCSVLogger

RESULTS = "results.json"
LAST_CHECKPOINT = "last.ckpt"


def barrier() -> None:
    """Waits for every process of a distributed run (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class EpochSeed(Callback):
    """Reseeds every RNG at the start of each epoch from (seed, epoch, rank), so an epoch's
    randomness (dropout, augmentation) is the same whether or not the run was resumed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = (
            self.seed * 1_000_003 + trainer.current_epoch * 1_009 + trainer.global_rank
        ) % 2**31
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)


@dataclass
class Stages:
    """What a paradigm needs to train: the trainer, callback and logger configs, the seed,
    and whether to resume stages found on disk."""

    trainer: dict[str, Any]
    callbacks: dict[str, Any]
    loggers: dict[str, Any]
    seed: int
    resume: bool = False

    def trainer_for(self, stage_dir: Path, monitor: str, mode: str, **overrides: Any) -> pl.Trainer:
        """A Trainer writing checkpoints and logs under ``stage_dir``."""
        callbacks: list[Callback] = [EpochSeed(self.seed)]
        for spec in self.callbacks.values():
            if spec is None:
                continue
            if spec["_target_"].endswith("LearningRateMonitor") and not any(self.loggers.values()):
                continue  # it needs a logger to write to (logger=none)
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
        loggers = [
            instantiate(spec, save_dir=str(stage_dir)) for spec in self.loggers.values() if spec
        ]
        options = {**self.trainer, **overrides}
        return instantiate(
            options, callbacks=callbacks, logger=loggers or False, default_root_dir=str(stage_dir)
        )

    def fit_and_test(
        self,
        module: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        stage_dir: Path,
        monitor: str = "val/acc",
        mode: str = "max",
        meta: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, float]:
        """Fits, tests the best checkpoint, exports its model; returns the test metrics."""
        done = stage_dir / RESULTS
        if done.is_file():
            return json.loads(done.read_text())
        trainer = self.trainer_for(stage_dir, monitor, mode, **overrides)
        last = stage_dir / "checkpoints" / LAST_CHECKPOINT
        ckpt_path = str(last) if self.resume and last.is_file() else None
        if ckpt_path:
            step = torch.load(ckpt_path, map_location="cpu", weights_only=True)["global_step"]
            for logger in trainer.loggers:
                if isinstance(logger, ResumableCSVLogger) and trainer.is_global_zero:
                    logger.drop_rows_after(step)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        metrics = {k: float(v) for k, v in results[0].items()}
        if trainer.is_global_zero:
            if best:  # under ddp_spawn the test ran in other processes, not on this module
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.load_state_dict(state)
            export_model(module.model, stage_dir, meta or {})
            done.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        trainer.strategy.barrier()
        return metrics

    def test_only(
        self, module: pl.LightningModule, datamodule: pl.LightningDataModule, stage_dir: Path
    ) -> dict[str, float]:
        """Tests ``module`` as it is, without training (e.g. a source model on the target)."""
        trainer = self.trainer_for(stage_dir, "val/acc", "max")
        results = trainer.test(module, datamodule=datamodule, verbose=False)
        return {k: float(v) for k, v in results[0].items()}
