"""Pruning in an Optuna search: each epoch, the model's validation metric is reported to the
job's trial, and the study's pruner may stop the trial (``hydra.sweeper.pruner``).

A callback of the ``hparams_search`` configs (``callbacks.optuna_pruning``). It reads the study
from the job's Hydra config (job ``n`` is trial ``n``, see hydra_plugins/paradigms_optuna) and
does nothing when the search has no pruner. Only the model's own stage (the run directory)
reports: a source stage or a baseline trains on other data or is not what the search ranks.
Written for ``pytorch_lightning`` (optuna-integration's callback targets ``lightning.pytorch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback


class OptunaPruning(Callback):
    """Reports ``monitor`` after each validation to the trial and raises ``optuna.TrialPruned``
    when the pruner says so; the sweeper records the trial as PRUNED.

    Args:
        monitor: the per-epoch metric the pruner compares; it must improve in the study's
            direction (``val/acc`` for a maximized accuracy).
    """

    def __init__(self, monitor: str = "val/acc") -> None:
        self.monitor = monitor
        self.study: dict[str, Any] | None = None
        if HydraConfig.initialized():  # the job's Hydra config holds only the hydra node
            hydra = HydraConfig.get()
            pruner = hydra.sweeper.get("pruner")
            if pruner and hydra.sweeper.get("storage"):
                self.study = {
                    "storage": hydra.sweeper.storage,
                    "study_name": hydra.sweeper.study_name,
                    "pruner": OmegaConf.to_container(pruner, resolve=True),
                    "trial": hydra.job.num,
                    "run_dir": hydra.runtime.output_dir,
                }
        self._trial: Any = None
        self._reports = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model_dir = self.study and Path(self.study["run_dir"]).resolve()
        self._reports = bool(model_dir) and Path(trainer.default_root_dir).resolve() == model_dir

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._reports or trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(f"optuna_pruning.monitor={self.monitor!r} is not logged")
            trial = self._open_trial()
            trial.report(float(value), step=trainer.current_epoch)
            prune = trial.should_prune()
        if trainer.strategy.broadcast(prune):
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}")

    def _open_trial(self) -> Any:
        if self._trial is None:
            from paradigms.runner.optuna_parts import make_pruner, stored_trial

            study = self.study
            pruner = make_pruner(study["pruner"])
            self._trial = stored_trial(
                study["storage"], study["study_name"], study["trial"], pruner
            )
        return self._trial
