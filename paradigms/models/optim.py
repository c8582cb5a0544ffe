"""Optimizer and learning-rate schedule from config, built with timm and torch.

The schedule is stepped every optimizer step: a linear warm-up, then cosine (or constant)
decay over the run's total steps, which Lightning estimates from the trainer and data.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.optim import create_optimizer_v2


def build_optimizer(params: Any, optimizer: dict[str, Any]) -> torch.optim.Optimizer:
    """``optimizer`` holds name (any timm optimizer: adamw, sgd, lamb...), lr, weight_decay,
    momentum. ``params`` is a module or a list of param groups (each may carry its own lr)."""
    extra = {"momentum": optimizer["momentum"]} if optimizer["name"] in ("sgd", "momentum") else {}
    return create_optimizer_v2(
        params,
        opt=optimizer["name"],
        lr=optimizer["lr"],
        weight_decay=optimizer.get("weight_decay", 0.0),
        **extra,
    )


def build_schedule(
    opt: torch.optim.Optimizer, scheduler: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``scheduler`` holds name (cosine | constant), warmup_fraction and min_lr_ratio. A
    multiplier of each group's own initial lr, so per-group ratios hold throughout."""
    warmup = int(scheduler.get("warmup_fraction", 0.0) * total_steps)
    floor = scheduler.get("min_lr_ratio", 0.0)
    cosine = scheduler["name"] == "cosine"

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
