"""Freezing part of a model, so that it really stays still for the whole run.

``requires_grad=False`` stops the weights, but BatchNorm layers also update their running
statistics in training mode, and Lightning puts the whole model in training mode every
epoch. Frozen BatchNorm layers are therefore converted to timm's ``FrozenBatchNorm2d``,
which has no training mode: its statistics are buffers that nothing updates.
"""

from __future__ import annotations

from collections.abc import Collection

from timm.layers import BatchNormAct2d
from timm.utils import freeze as timm_freeze
from torch import nn

BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, BatchNormAct2d)


def frozen_norms(model: nn.Module, trainable: Collection[str]) -> list[str]:
    """Names of the BatchNorm layers none of whose parameters are in ``trainable``."""
    trainable = set(trainable)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, BATCH_NORMS)
        and not any(f"{name}.{p}" in trainable for p, _ in module.named_parameters())
    ]


def freeze_except(
    model: nn.Module, trainable: Collection[str], freeze_norms: bool = True
) -> tuple[int, int]:
    """Freezes every parameter not named in ``trainable`` and (unless ``freeze_norms`` is
    False) every BatchNorm whose parameters are all frozen; returns (trainable, total)
    parameter counts, the total counted before frozen BatchNorm weights became buffers."""
    trainable = set(trainable)
    total = sum(p.numel() for p in model.parameters())
    for name, param in model.named_parameters():
        param.requires_grad = name in trainable
    norms = frozen_norms(model, trainable)
    if norms and freeze_norms:
        timm_freeze(model, norms)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
