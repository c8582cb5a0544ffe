"""Freezing part of a model, so that it really stays still for the whole run.

``requires_grad=False`` stops the weights, but BatchNorm layers also update their running
statistics in training mode, and Lightning puts the whole model in training mode every
epoch. Frozen BatchNorm layers are therefore converted to timm's ``FrozenBatchNorm2d``,
which has no training mode: its statistics are buffers that nothing updates. timm has no
1d counterpart (LeViT, RepViT and EfficientViT normalise tokens with ``BatchNorm1d``), so
``FrozenBatchNorm1d`` here does the same for them.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from timm.layers import BatchNormAct2d
from timm.utils import freeze as timm_freeze
from torch import nn
from torch.nn import functional as F

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, BatchNormAct2d)


class FrozenBatchNorm1d(nn.Module):
    """A ``BatchNorm1d`` with fixed statistics and affine terms, all buffers, under the same
    state-dict keys (less ``num_batches_tracked``), so its export loads into the stock layer."""

    def __init__(self, norm: nn.BatchNorm1d) -> None:
        super().__init__()
        self.eps = norm.eps
        features = norm.num_features
        for name, default in (
            ("weight", torch.ones(features)),
            ("bias", torch.zeros(features)),
            ("running_mean", torch.zeros(features)),
            ("running_var", torch.ones(features)),
        ):
            value = getattr(norm, name)
            self.register_buffer(name, (default if value is None else value).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


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
        one_d = [n for n in norms if type(model.get_submodule(n)) is nn.BatchNorm1d]
        for name in one_d:
            parent, _, child = name.rpartition(".")
            model.get_submodule(parent).add_module(
                child, FrozenBatchNorm1d(model.get_submodule(name))
            )
        two_d = [n for n in norms if n not in one_d]
        if two_d:  # timm freezes the whole model when given no names
            timm_freeze(model, two_d)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
