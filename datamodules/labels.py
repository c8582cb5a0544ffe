"""Labels as datamodules serve them, and the one missing-label convention.

A batch is ``(images, label_1, ..., label_T)``: one label tensor per task (one for a
single-label dataset). A sample may lack a label (an empty CSV cell, a hidden multi-task
label, an unlabelled image of distillation's transfer set). A missing label is the value that
the loss reading it skips:

- in an integer tensor of class indices (what single-label paradigms train on), ``IGNORE``
  (-100): ``torch.nn.CrossEntropyLoss``'s default ``ignore_index``, which the classification
  module's loss and torchmetrics are both given;
- in a float tensor (multi-task labels: class ids, 0/1 or real values), NaN, because a real
  value has no spare integer.

``is_missing`` is the one test of both, for torch tensors and numpy arrays alike; every
datamodule writes missing labels this way and every loss and metric that reads them skips them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IGNORE = -100

Labels = torch.Tensor | np.ndarray


def is_missing(labels: Labels) -> Labels:
    """Where ``labels`` lack a value: NaN in a float tensor, ``IGNORE`` in an integer one."""
    if isinstance(labels, torch.Tensor):
        floating = labels.is_floating_point()
    else:
        floating = labels.dtype.kind == "f"
    return labels != labels if floating else labels == IGNORE


def label_index(values: list[Any], names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Class indices of raw label values, and the class names (sorted, numbers numerically);
    an empty value is ``IGNORE``."""
    present = {str(v) for v in values if v is not None and str(v) != ""}
    if names is None:
        names = sorted(present, key=int if all(_integer(v) for v in present) else str)
    lookup = {name: i for i, name in enumerate(names)}
    return np.array(
        [lookup.get(str(v), IGNORE) if v not in (None, "") else IGNORE for v in values]
    ), names


def label_values(values: list[str]) -> tuple[np.ndarray, list[str] | None]:
    """A column of a multi-task table as float labels (NaN where empty): numbers as written
    (class ids, 0/1 or real values; names ``None``), or else class indices of its names."""
    present = [v.strip() for v in values if v.strip()]
    if all(_number(v) for v in present):
        return np.array([float(v) if v.strip() else np.nan for v in values]), None
    indices, names = label_index([v.strip() for v in values])
    return np.where(indices == IGNORE, np.nan, indices.astype(float)), names


def _integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def per_class(labels: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """The positions of the first ``count`` samples of each class in a ``seed``-ed order
    (sorted; all of them for ``count=None``): a few-shot training set, or a validation set
    with as many labels per class as training has (``val_per_class``)."""
    if count is None:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    picked = [order[labels[order] == c][:count] for c in np.unique(labels[~is_missing(labels)])]
    return np.sort(np.concatenate(picked))
