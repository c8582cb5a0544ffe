"""The LightningModule every single-label paradigm trains: a model, a loss, torchmetrics."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from datamodules.labels import IGNORE
from paradigms.models.optim import build_optimizer, build_schedule

SPLITS = ("train", "val", "test")
SELECTED = ("val", "test")  # what a stage reports of its selected checkpoint (runner.stages)


def accuracy_metrics(num_classes: int, top_k: int) -> MetricCollection:
    """Top-1 accuracy, plus top-k when k is below the number of classes."""
    common = {"average": "micro", "ignore_index": IGNORE}  # missing labels (datamodules.labels)
    metrics = {"acc": MulticlassAccuracy(num_classes, **common)}
    if 1 < top_k < num_classes:
        metrics[f"acc_top{top_k}"] = MulticlassAccuracy(num_classes, top_k=top_k, **common)
    return MetricCollection(metrics)


def reported_metrics(
    top_k: int, stages: list[str], splits: tuple[str, ...] = ("test",)
) -> list[str]:
    """The summary keys a classification run reports: ``[stage/]<split>/<metric>``; a stage
    trained through ``Stages`` reports ``SELECTED`` (its selected checkpoint's validation
    metrics beside the test metrics)."""
    names = ["acc", "loss"] + ([f"acc_top{top_k}"] if top_k > 1 else [])
    return [f"{stage}{split}/{name}" for stage in stages for split in splits for name in names]


class ClassificationModule(pl.LightningModule):
    """Trains ``model`` with cross-entropy; logs loss and accuracy per split as ``split/name``.
    Testing also fills ``test_confusion_matrix`` (counts, rows: true class) for the plots.

    Epoch values accumulate in torchmetrics (the loss as a batch-size-weighted mean, as
    Lightning's ``on_epoch`` mean would) and are logged once per epoch: each ``self.log`` call
    costs about a millisecond of Lightning bookkeeping, which dominates a step on cached
    features. Only the training loss is logged every step (``train/loss_step``).

    ``param_groups`` (optional) replaces the model's parameters as the optimizer's groups, so a
    paradigm can set per-group learning rates or leave frozen parameters out.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        label_smoothing: float = 0.0,
        top_k: int = 3,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_cfg = optimizer
        self.scheduler_cfg = scheduler
        self.param_groups = param_groups
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing, ignore_index=IGNORE)
        metrics = accuracy_metrics(num_classes, top_k)
        self.metrics = nn.ModuleDict(
            {f"{split}_metrics": metrics.clone(prefix=f"{split}/") for split in SPLITS}
        )
        # "<split>_loss": "train" would clash with Module.train in a ModuleDict
        self.losses = nn.ModuleDict({f"{split}_loss": MeanMetric() for split in SPLITS})
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion_matrix: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The training objective; distillation overrides it."""
        return self.criterion(logits, batch[1])

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.loss(logits, batch) if split == "train" else self.criterion(logits, y)
        self.metrics[f"{split}_metrics"].update(logits.detach(), y)
        self.losses[f"{split}_loss"].update(loss.detach(), len(y))
        if split == "test":
            self.test_confusion.update(logits.detach(), y)
        if split == "train":
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _log_epoch(self, split: str) -> None:
        """Logs the split's epoch metrics (synced across processes) and starts them afresh."""
        metrics, loss = self.metrics[f"{split}_metrics"], self.losses[f"{split}_loss"]
        name = "train/loss_epoch" if split == "train" else f"{split}/loss"
        self.log_dict({**metrics.compute(), name: loss.compute()}, prog_bar=True)
        metrics.reset()
        loss.reset()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        params = self.param_groups or self.model
        opt = build_optimizer(params, self.optimizer_cfg)
        schedule = build_schedule(opt, self.scheduler_cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
