"""Settings of the model pieces every paradigm shares: the backbone spec, the optimizer and
schedule, a classification head and the supervised recipe (see
``paradigms.runner.validation``). Torch-free: read before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradigms.models.names import unknown_model_hint
from paradigms.runner.validation import (
    Check,
    Schema,
    each,
    flag,
    number,
    one_of,
    optional,
    text,
    whole,
)

ACTIVATIONS = ("gelu", "relu", "silu", "tanh")  # paradigms.models.heads builds these
SCHEDULES = ("cosine", "constant")  # paradigms.models.optim steps these


def _known_model(value: Any) -> bool:
    return not isinstance(value, str) or unknown_model_hint(value) is None


def _weights_found(value: Any) -> bool:
    return value in (None, "none", "timm") or Path(str(value)).expanduser().exists()


class Backbone(Schema):
    """A timm model and where its weights come from (``conf/backbone/``)."""

    name = (
        text("mobilenetv3_small_050"),
        Check(_known_model, "timm has no such model", lambda v: unknown_model_hint(v) or ""),
    )
    weights = Check(
        _weights_found,
        "no such file or run directory",
        "give a .safetensors/.pth/.ckpt file, a run directory, 'timm' or 'none'",
    )
    trust_pickle = flag()
    in_chans = whole(1, example=3)
    img_size = optional(whole(1, example=32))
    drop_rate = number(0, 1, open_high=True, example=0.1)
    drop_path_rate = number(0, 1, open_high=True, example=0.1)


class Optimizer(Schema):
    """Any timm optimizer by name, with its peak learning rate."""

    name = text("adamw")
    lr = number(0, open_low=True, example="1e-3", why="a learning rate must be > 0")
    weight_decay = number(0, example=0.05)
    momentum = number(0, 1, open_high=True, example=0.9)


class Scheduler(Schema):
    """The learning-rate schedule, stepped every optimizer step."""

    name = one_of(*SCHEDULES)
    warmup_fraction = number(0, 1, open_high=True, example=0.1)
    min_lr_ratio = number(0, 1, example=0.01)


class Head(Schema):
    """A new classification head: linear, or an MLP."""

    hidden = each(whole(1), "[256] (or [] for a linear head)")
    dropout = number(0, 1, open_high=True, example=0.1)
    activation = one_of(*ACTIVATIONS)


class SupervisedRecipe(Schema):
    """Training from random weights (scratch, the baselines, the source stage)."""

    optimizer = Optimizer
    scheduler = Scheduler
    label_smoothing = number(0, 1, open_high=True, example=0.1)
    top_k = whole(1, example=3)
