"""New classification heads for a timm model: linear, or an MLP with dropout.

The head is installed where timm keeps the classifier (``pretrained_cfg['classifier']``),
after ``reset_classifier`` has set it up for the new label space, so the model's own
pooling and neck feed it and ``model(x)`` needs no wrapper. A plain linear head stays timm's
own layer, so the exported weights load into a stock timm model.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from paradigms.models.schema import ACTIVATIONS as ACTIVATION_NAMES
from paradigms.runner.errors import ConfigError

ACTIVATIONS = dict(zip(ACTIVATION_NAMES, (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh), strict=True))


def build_head(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
    activation: str = "gelu",
) -> nn.Module:
    """Linear (``hidden=[]``) or an MLP; dropout precedes every linear layer when > 0."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
    return nn.Sequential(
        *(layer for layer in layers if not isinstance(layer, nn.Dropout) or dropout)
    )


def replace_head(
    model: nn.Module,
    num_classes: int,
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
    activation: str = "gelu",
) -> None:
    """Gives ``model`` a freshly initialised head for ``num_classes``."""
    model.reset_classifier(num_classes)
    if not hidden and not dropout:
        return
    names = model.pretrained_cfg.get("classifier", "head")
    linear = model.get_classifier()
    if not isinstance(names, str) or not isinstance(linear, nn.Linear):
        raise ConfigError(
            "paradigm.head.hidden",
            hidden,
            f"{type(model).__name__} has no single linear classifier to replace with an MLP",
            "use a linear head: paradigm.head.hidden=[] paradigm.head.dropout=0",
        )
    model.set_submodule(
        names, build_head(linear.in_features, num_classes, hidden, dropout, activation)
    )
