"""Whether outputs computed once on a datamodule's training images (transfer's frozen
features, distillation's teacher logits) match what training sees every epoch.

They do unless the training inputs change at random. A datamodule says so with
``random_augmentation``: in-memory ones (``datamodules.in_memory``; digits sets it when
``translate > 0``) and file-backed ones (``datamodules.images``: random unless
``augment.enabled=false``, or ``in_memory=true``, which decodes with the evaluation transform).
"""

from __future__ import annotations

from typing import Any


def random_inputs(datamodule: Any) -> str | None:
    """Why ``datamodule``'s training inputs may differ from epoch to epoch (None: they do not).
    A datamodule that does not declare ``random_augmentation`` counts as random."""
    augments = getattr(datamodule, "random_augmentation", None)
    if augments is None:
        return f"{type(datamodule).__name__} does not declare random_augmentation"
    if augments:
        return "the training data is randomly augmented"
    return None
