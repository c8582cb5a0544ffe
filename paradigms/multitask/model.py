"""Hard parameter sharing: one timm backbone (and optional neck) shared by one head per task."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paradigms.models.backbone import create_pretrained
from paradigms.multitask.tasks import Task


def mlp(in_features: int, hidden: list[int], out_features: int | None, dropout: float) -> nn.Module:
    """Linear layers with ReLU and dropout between them; identity when there are none."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    if out_features is not None:
        layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


class MultiTaskModel(nn.Module):
    """``backbone -> neck -> {task: head}``; the backbone and neck are the shared parameters."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.neck(self.backbone(x))
        return {name: head(features) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        shared = [*self.backbone.parameters(), *self.neck.parameters()]
        return [p for p in shared if p.requires_grad]

    def last_shared_layer(self) -> slice:
        """Where the last shared layer's weight (the last shared parameter of two or more
        dimensions: a linear or convolution weight) lies in the concatenation of
        ``shared_parameters()``: GradNorm's ``W``."""
        shared = self.shared_parameters()
        last = max((i for i, p in enumerate(shared) if p.dim() > 1), default=len(shared) - 1)
        start = sum(p.numel() for p in shared[:last])
        return slice(start, start + shared[last].numel())


def build_model(spec: dict[str, Any], tasks: list[Task], neck: dict[str, Any]) -> MultiTaskModel:
    """Any timm backbone from any of the foundation's weight sources (random by default),
    its classifier removed, an MLP neck of ``neck.hidden`` widths and one head per task."""
    weights = spec.get("weights") or "none"
    # Built with a throw-away head so a weights file with any head loads, then pooled features.
    backbone, _ = create_pretrained({**spec, "weights": weights}, num_classes=1)
    backbone.reset_classifier(0)
    hidden = list(neck.get("hidden") or [])
    width = hidden[-1] if hidden else backbone.num_features
    heads = {
        task.name: mlp(
            width,
            list(task.head.get("hidden") or []),
            task.num_outputs,
            task.head.get("dropout", 0.0),
        )
        for task in tasks
    }
    return MultiTaskModel(
        backbone, mlp(backbone.num_features, hidden, None, neck.get("dropout", 0.0)), heads
    )
