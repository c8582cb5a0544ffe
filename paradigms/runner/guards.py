"""Callbacks that keep a run trustworthy: per-epoch seeding for exact resume, and a guard
against non-finite losses."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn

from paradigms.runner.errors import RunError


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


class NonFiniteLoss(RunError):
    """The training loss became NaN or Inf."""


class NonFiniteGuard(Callback):
    """Checks every training loss before its backward pass. ``stop``: raise before the bad
    step touches the weights (the last checkpoint stays the last good one). ``skip``: drop
    the step's gradients so the optimizer leaves every weight and its state as they were.
    Under DDP the ranks decide together, so they never diverge."""

    def __init__(self, policy: str = "stop") -> None:
        self.policy = policy
        self.bad_step = False
        self.skipped = 0

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        self.bad_step = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if self.bad_step and self.policy == "stop":
            raise NonFiniteLoss(
                f"the training loss is {loss.detach().float().mean().item()} at epoch "
                f"{trainer.current_epoch}, step {trainer.global_step}; the run stopped before "
                "that step changed the weights, and its last checkpoint is kept. Fix: lower "
                "paradigm.optimizer.lr, set trainer.gradient_clip_val, or nonfinite=skip"
            )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self.bad_step:
            return
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        self.skipped += 1
        rank_zero_warn(f"skipped step {trainer.global_step}: non-finite training loss")
