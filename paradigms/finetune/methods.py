"""Fine-tuning methods: which parameters learn, and when. One class each, chosen by the
``paradigm/method`` config group (``conf/paradigm/method/<name>.yaml``); their settings are
checked by the schema of the same name in ``paradigms/finetune/schema.py``.

- ``Full``: everything learns. ``Partial``: the top N block groups and/or parameters matching
  regexes, plus the head; the rest is frozen as in transfer. ``LpFt`` (Kumar et al. 2022): a
  linear probe of the head first, then everything from that head.
- ``Gradual`` (ULMFiT, Howard & Ruder 2018): one more block group every ``every`` epochs,
  from the top. Lightning's ``BackboneFinetuning`` adds parameters to the optimizer mid-run,
  which DDP and schedulers do not expect; here every parameter is registered with the
  optimizer and DDP from the start and a held group is kept still instead (``GradualUnfreezing``).
- ``Lora``: low-rank adapters (peft) on the modules matching a regex; the head learns fully.

BatchNorm layers whose parameters are all frozen follow the paradigm's ``bn_mode``: ``frozen``
(``FrozenBatchNorm2d``), ``eval`` (kept in eval mode: fixed statistics) or ``train``
(statistics still adapt to the new data).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from paradigms.finetune.lr_groups import depths
from paradigms.models.backbone import classifier_keys
from paradigms.models.freezing import BATCH_NORMS, freeze_except, frozen_norms
from paradigms.models.groups import block_group_count, top_groups
from paradigms.runner.errors import ConfigError

KEY = "paradigm.method"


@dataclass
class PreparedModel:
    """What a method made of the model: the module that trains (a peft model for LoRA), the
    timm model inside it, the BatchNorm layers to keep in eval mode, the callbacks that carry
    the method out, the model to export (None: the one that trains) and, for gradual
    unfreezing, every how many epochs a block group opens (for the learning-rate table)."""

    model: nn.Module
    timm_model: nn.Module
    still_norms: list[nn.Module] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    export: nn.Module | None = None
    unfreeze_every: int | None = None


# ``train(prepared, lr, stage, title, **trainer_overrides)``: trains a stage of its own in
# ``<run dir>/<stage>``, reports it as ``<stage>/test/*`` and returns the model it exported.
StageTrainer = Callable[..., nn.Module]


def matching(names: list[str], patterns: list[str]) -> list[str]:
    """The names that some regex in ``patterns`` matches (``re.search``)."""
    return [n for n in names if any(re.search(p, n) for p in patterns)]


def freeze(model: nn.Module, trainable: set[str], bn_mode: str) -> list[nn.Module]:
    """Freezes all but ``trainable``; returns the BatchNorm layers to keep in eval mode."""
    norms = frozen_norms(model, trainable)
    freeze_except(model, trainable, freeze_norms=bn_mode == "frozen")
    return [model.get_submodule(n) for n in norms] if bn_mode == "eval" else []


def head_only(model: nn.Module, bn_mode: str) -> PreparedModel:
    """A linear probe: only the classifier learns."""
    return PreparedModel(model, model, freeze(model, classifier_keys(model), bn_mode))


class Method:
    """The base of every method: as it is, full fine-tuning (every parameter learns).

    A method overrides ``prepare`` (which parameters learn, and when); it may ``check`` the
    backbone before anything trains and ``warm_up`` the model in a stage of its own first.
    ``lr`` is its peak learning rate (None: ``paradigm.optimizer.lr``).
    """

    stages: ClassVar[tuple[str, ...]] = ()  # the stages ``warm_up`` trains, reported as <stage>/

    def __init__(self, lr: float | None = None) -> None:
        self.lr = lr

    @property
    def name(self) -> str:
        """The class name in snake case (``LpFt`` -> ``lp_ft``), as tables and rows show it."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def check(self, model: nn.Module, backbone: str) -> None:
        """Stops on settings that ``model`` (a fresh ``backbone``) cannot honour."""

    def warm_up(self, model: nn.Module, bn_mode: str, train: StageTrainer) -> nn.Module:
        """The model the main stage starts from, after any stages of the method's own."""
        return model

    def prepare(self, model: nn.Module, bn_mode: str) -> PreparedModel:
        """The method applied to ``model`` for the main stage."""
        return PreparedModel(model, model)


class Full(Method):
    """Every parameter learns."""


class Partial(Method):
    """The top ``last_groups`` block groups, the parameters matching ``patterns`` and the
    head learn; the rest is frozen."""

    def __init__(
        self, last_groups: int = 1, patterns: list[str] | None = None, lr: float | None = None
    ) -> None:
        super().__init__(lr)
        self.last_groups = last_groups
        self.patterns = list(patterns or [])

    def check(self, model: nn.Module, backbone: str) -> None:
        groups = block_group_count(model)
        if self.last_groups > groups:
            raise ConfigError(
                f"{KEY}.last_groups",
                self.last_groups,
                f"{backbone} has {groups} block groups above its stem",
                f"use a value from 0 to {groups}",
            )
        names = [n for n, _ in model.named_parameters()]
        missed = [p for p in self.patterns if not matching(names, [p])]
        if missed:
            raise ConfigError(
                f"{KEY}.patterns",
                missed[0],
                "matches no parameter",
                f"use regexes of {backbone}'s parameter names (e.g. {names[-3]!r})",
            )

    def prepare(self, model: nn.Module, bn_mode: str) -> PreparedModel:
        names = [n for n, _ in model.named_parameters()]
        trainable = (
            set(top_groups(model, self.last_groups))
            | set(matching(names, self.patterns))
            | classifier_keys(model)
        )
        return PreparedModel(model, model, freeze(model, trainable, bn_mode))


class LpFt(Method):
    """LP-FT: a linear probe of the head (``probe_epochs`` at ``probe_lr``), then every
    parameter learns from that head."""

    stages = ("probe",)

    def __init__(
        self, probe_epochs: int = 5, probe_lr: float = 1e-2, lr: float | None = None
    ) -> None:
        super().__init__(lr)
        self.probe_epochs = probe_epochs
        self.probe_lr = probe_lr

    def warm_up(self, model: nn.Module, bn_mode: str, train: StageTrainer) -> nn.Module:
        probe = head_only(model, bn_mode)
        return train(
            probe, self.probe_lr, "probe", "linear probe (lp_ft 1)", max_epochs=self.probe_epochs
        )


class Gradual(Method):
    """Gradual unfreezing: the head from the start, one more block group from the top every
    ``every`` epochs."""

    def __init__(self, every: int = 1, lr: float | None = None) -> None:
        super().__init__(lr)
        self.every = every

    def prepare(self, model: nn.Module, bn_mode: str) -> PreparedModel:
        depth = depths(model)
        norms = {
            module: depth[f"{name}.weight"]
            for name, module in model.named_modules()
            if isinstance(module, BATCH_NORMS) and module.weight is not None
        }
        callback = GradualUnfreezing(self.every, {} if bn_mode == "train" else norms)
        return PreparedModel(model, model, callbacks=[callback], unfreeze_every=self.every)


class Lora(Method):
    """Low-rank adapters (rank ``r``, scale ``alpha / r``) on the conv and linear layers whose
    full name matches ``target_modules``; the base weights frozen, the head trained fully. The
    export is a stock timm model with the adapters merged."""

    LAYERS = (nn.Conv2d, nn.Linear)

    def __init__(
        self,
        r: int = 4,
        alpha: float = 8,
        dropout: float = 0.0,
        target_modules: str = r".*\.(conv\d|conv_pwl?|qkv|proj|fc\d)(\.conv)?",
        lr: float | None = None,
    ) -> None:
        super().__init__(lr)
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.target_modules = target_modules

    def targets(self, model: nn.Module) -> list[str]:
        """Full names of the conv and linear layers ``target_modules`` matches, less grouped
        convs (peft cannot merge their adapters into the export). peft gets these names, not
        the regex, which would also match a wrapper of the same name (regnet's ``conv1``
        block holding ``conv1.conv``)."""
        layers = [
            n
            for n, m in model.named_modules()
            if isinstance(m, self.LAYERS) and getattr(m, "groups", 1) == 1
        ]
        return [n for n in layers if re.fullmatch(self.target_modules, n)]

    def check(self, model: nn.Module, backbone: str) -> None:
        names = [n for n, m in model.named_modules() if isinstance(m, self.LAYERS)]
        if not self.targets(model):
            raise ConfigError(
                f"{KEY}.target_modules",
                self.target_modules,
                f"matches no conv or linear layer of {backbone} (a full-name regex)",
                f"match names such as {', '.join(names[1:4])}",
            )

    def prepare(self, model: nn.Module, bn_mode: str) -> PreparedModel:
        from peft import LoraConfig, get_peft_model

        still = freeze(model, classifier_keys(model), bn_mode)
        plain = copy.deepcopy(model)
        config = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.targets(model),
        )
        wrapped = get_peft_model(model, config)
        head = classifier_keys(model)
        for name, param in model.named_parameters():
            if name in head:
                param.requires_grad = True
        return PreparedModel(wrapped, model, still, [MergedExport(plain)], export=plain)


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
