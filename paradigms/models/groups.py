"""A timm model's layers as ordered groups, from the stem up to the classifier.

timm models describe their coarse structure with ``group_matcher`` (stem, then one group
per stage or block); the layers it leaves unmatched (a neck such as a final norm or
``conv_head``) sit between the last block and the classifier. Transfer replaces the top N
groups, partial fine-tuning trains them, gradual unfreezing walks down them.
"""

from __future__ import annotations

from timm.models._manipulate import group_with_matcher
from torch import nn

from paradigms.models.backbone import classifier_keys


def layer_groups(model: nn.Module) -> list[list[str]]:
    """State-dict keys (parameters and buffers) per coarse group, stem first, classifier
    excluded; an unmatched neck joins the top block group, since it only serves the head."""
    head = classifier_keys(model)
    grouped = group_with_matcher(model.state_dict().items(), model.group_matcher(coarse=True))
    groups = [list(keys) for _, keys in sorted(grouped.items())]
    top = groups[-1]
    if len(groups) > 1 and any(k in head for k in top):  # the unmatched group: neck + head
        groups = groups[:-1]
        groups[-1] = groups[-1] + top
    groups = [[k for k in keys if k not in head] for keys in groups]
    return [keys for keys in groups if keys]


def top_groups(model: nn.Module, count: int) -> list[str]:
    """The keys of the top ``count`` block groups (never the stem)."""
    groups = layer_groups(model)[1:]
    return [k for keys in groups[len(groups) - count :] for k in keys] if count else []


def block_group_count(model: nn.Module) -> int:
    """How many block groups sit above the stem (the most that can be replaced or trained)."""
    return len(layer_groups(model)) - 1
