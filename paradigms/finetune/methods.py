"""Fine-tuning strategies: which parameters learn, and when.

- ``full``: everything learns. ``partial``: the top N block groups and/or parameters matching
  regexes, plus the head; the rest is frozen as in transfer. ``lp_ft`` (Kumar et al. 2022):
  a linear probe of the head, then everything from that head (two stages, see finetune.py).
- ``gradual`` (ULMFiT, Howard & Ruder 2018): one more block group every ``every`` epochs,
  from the top. Lightning's ``BackboneFinetuning`` adds parameters to the optimizer mid-run,
  which DDP and schedulers do not expect; here every parameter is registered with the
  optimizer and DDP from the start and a held group is kept still instead (``GradualUnfreezing``).
- ``lora``: low-rank adapters (peft) on the modules matching a regex; the head learns fully.

BatchNorm layers whose parameters are all frozen follow ``bn_mode``: ``frozen``
(``FrozenBatchNorm2d``), ``eval`` (kept in eval mode: fixed statistics) or ``train``
(statistics still adapt to the new data).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from paradigms.finetune.lr_groups import depths
from paradigms.models.backbone import classifier_keys
from paradigms.models.classifier import ClassificationModule
from paradigms.models.freezing import BATCH_NORMS, freeze_except, frozen_norms
from paradigms.models.groups import top_groups

STRATEGIES = ("full", "partial", "lp_ft", "gradual", "lora")
BN_MODES = ("frozen", "eval", "train")


@dataclass
class Plan:
    """What a strategy made of the model: the module that trains (a peft model for LoRA),
    the timm model inside it, the BatchNorm layers to keep in eval mode, the callbacks that
    carry the strategy out, and the model to export (None: the one that trains)."""

    model: nn.Module
    timm_model: nn.Module
    still_norms: list[nn.Module] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    export: nn.Module | None = None


def matching(names: list[str], patterns: list[str]) -> list[str]:
    """The names that some regex in ``patterns`` matches (``re.search``)."""
    return [n for n in names if any(re.search(p, n) for p in patterns)]


def freeze(model: nn.Module, trainable: set[str], bn_mode: str) -> list[nn.Module]:
    """Freezes all but ``trainable``; returns the BatchNorm layers to keep in eval mode."""
    norms = frozen_norms(model, trainable)
    freeze_except(model, trainable, freeze_norms=bn_mode == "frozen")
    return [model.get_submodule(n) for n in norms] if bn_mode == "eval" else []


def head_only(model: nn.Module, bn_mode: str) -> Plan:
    """A linear probe: only the classifier learns (LP-FT's first stage)."""
    return Plan(model, model, freeze(model, classifier_keys(model), bn_mode))


def partial(model: nn.Module, last_groups: int, patterns: list[str], bn_mode: str) -> Plan:
    names = [n for n, _ in model.named_parameters()]
    trainable = (
        set(top_groups(model, last_groups))
        | set(matching(names, patterns))
        | classifier_keys(model)
    )
    return Plan(model, model, freeze(model, trainable, bn_mode))


def gradual(model: nn.Module, every: int, bn_mode: str) -> Plan:
    depth = depths(model)
    norms = {
        module: depth[f"{name}.weight"]
        for name, module in model.named_modules()
        if isinstance(module, BATCH_NORMS) and module.weight is not None
    }
    callback = GradualUnfreezing(every, {} if bn_mode == "train" else norms)
    return Plan(model, model, callbacks=[callback])


def lora(model: nn.Module, lora_cfg: dict[str, Any], bn_mode: str) -> Plan:
    """Adapters on the modules whose full name matches ``target_modules``; the base weights
    frozen, the head trained fully. The export is a stock timm model with the adapters merged."""
    from peft import LoraConfig, get_peft_model

    still = freeze(model, classifier_keys(model), bn_mode)
    plain = copy.deepcopy(model)
    config = LoraConfig(
        r=lora_cfg["r"],
        lora_alpha=lora_cfg["alpha"],
        lora_dropout=lora_cfg.get("dropout", 0.0),
        target_modules=lora_cfg["target_modules"],
    )
    wrapped = get_peft_model(model, config)
    head = classifier_keys(model)
    for name, param in model.named_parameters():
        if name in head:
            param.requires_grad = True
    return Plan(wrapped, model, still, [MergedExport(plain)], export=plain)


class GradualUnfreezing(Callback):
    """Holds block groups still until their epoch: depth d (1 = the top block group) learns
    from epoch ``d * every`` on; the head (depth 0) from the start.

    Every parameter is registered with the optimizer and DDP from the start; a held group's
    gradients are dropped (set to None) after backward and clipping, just before the optimizer
    step. torch and timm optimizers skip a parameter whose grad is None entirely: no update, no
    weight decay, no optimizer state, so it stays bit-identical, the same on every rank. Its
    BatchNorm layers stay in eval mode, so their statistics do not move either.
    """

    def __init__(self, every: int, norms: dict[nn.Module, int]) -> None:
        self.every = every
        self.norms = norms

    def open_depth(self, trainer: pl.Trainer) -> int:
        return trainer.current_epoch // self.every

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        depth = self.open_depth(trainer)
        if trainer.current_epoch % self.every == 0:
            rank_zero_info(f"gradual unfreezing: epoch {trainer.current_epoch}, depth <= {depth}")
        pl_module.still_norms = [m for m, d in self.norms.items() if d > depth]
        pl_module.train()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        depth = self.open_depth(trainer)
        for group in optimizer.param_groups:
            if group["depth"] > depth:
                for param in group["params"]:
                    param.grad = None


class MergedExport(Callback):
    """After testing, loads the LoRA-merged weights into ``plain`` (a stock timm model), the
    model the stage exports, so its ``model.safetensors`` needs no peft to use."""

    def __init__(self, plain: nn.Module) -> None:
        self.plain = plain

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        merged = copy.deepcopy(pl_module.model).merge_and_unload()
        self.plain.load_state_dict(merged.state_dict())


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
    cross-entropy), BatchNorm layers held in eval mode, EMA, and a strategy's callbacks."""

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
