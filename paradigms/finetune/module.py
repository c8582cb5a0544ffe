"""The LightningModule that fine-tunes: the shared classifier plus mixup/cutmix, BatchNorm
layers held in eval mode, an EMA of the weights and a method's callbacks."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from paradigms.models.classifier import ClassificationModule


class EMA(EMAWeightAveraging):
    """Lightning's EMA of the weights (validated, checkpointed as ``state_dict``, kept at the
    end of fit). Lightning reloads the raw weights whenever it loads such a checkpoint; outside
    fit (testing the best checkpoint) that is skipped, so the EMA weights are tested and exported."""

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class FinetuneModule(ClassificationModule):
    """The classifier, plus mixup/cutmix (timm ``Mixup`` per training batch, soft-target
    cross-entropy), BatchNorm layers held in eval mode, EMA, and a method's callbacks."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        label_smoothing: float = 0.0,
        top_k: int = 3,
        param_groups: list[dict[str, Any]] | None = None,
        mixup: dict[str, Any] | None = None,
        still_norms: list[nn.Module] | None = None,
        ema_decay: float = 0.0,
        callbacks: list[Callback] | None = None,
    ) -> None:
        super().__init__(
            model, num_classes, optimizer, scheduler, label_smoothing, top_k, param_groups
        )
        mixup = mixup or {}
        self.mixup = None
        if mixup.get("mixup_alpha", 0.0) > 0 or mixup.get("cutmix_alpha", 0.0) > 0:
            self.mixup = Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes)
        self.soft_criterion = SoftTargetCrossEntropy()
        self.soft_targets: torch.Tensor | None = None
        self.still_norms = still_norms or []
        self.train(self.training)  # Lightning keeps each submodule's mode as it finds it
        self.extra_callbacks = list(callbacks or [])
        if ema_decay > 0:
            self.extra_callbacks.append(EMA(decay=ema_decay))

    def train(self, mode: bool = True) -> FinetuneModule:
        super().train(mode)
        for norm in self.still_norms if mode else ():
            norm.eval()
        return self

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        even = len(batch[0]) - len(batch[0]) % 2  # timm's Mixup pairs a batch with its flip
        if self.mixup is None or even == 0:
            return super().training_step(batch, batch_idx)
        x, y = batch[0][:even], batch[1][:even]
        mixed, self.soft_targets = self.mixup(x.clone(), y)
        try:
            return self._step((mixed, y), "train")
        finally:
            self.soft_targets = None

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.soft_targets is not None:
            return self.soft_criterion(logits, self.soft_targets)
        return super().loss(logits, batch)

    def configure_callbacks(self) -> list[Callback]:
        return self.extra_callbacks
