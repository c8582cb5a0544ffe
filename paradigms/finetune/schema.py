"""Settings of fine-tuning and of each of its methods (see ``paradigms.runner.validation``).
A method's schema has its class's name: ``paradigms.finetune.methods.Partial`` is checked by
``Partial`` here."""

from __future__ import annotations

from typing import Any

from paradigms.models.schema import SupervisedRecipe
from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Schema, each, join, number, one_of, optional, regex, whole

BN_MODES = ("frozen", "eval", "train")


class LrGroups(Schema):
    """Per-group learning rates: the head's multiplier and layer-wise decay."""

    head_lr_mult = number(0, open_low=True, example=10.0)
    layer_decay = number(0, 1, open_low=True, example=0.75)


class Mixup(Schema):
    """timm's Mixup arguments."""

    mixup_alpha = number(0, example=0.2)
    cutmix_alpha = number(0, example=1.0)
    prob = number(0, 1, example=1.0)
    switch_prob = number(0, 1, example=0.5)


class Finetune(SupervisedRecipe):
    """``conf/paradigm/finetune.yaml``."""

    bn_mode = one_of(*BN_MODES)
    lr_groups = LrGroups
    mixup = Mixup
    ema_decay = number(0, 1, open_high=True, example=0.99)


class Method(Schema):
    """What every method has: its own peak learning rate, or null for the optimizer's."""

    lr = optional(number(0, open_low=True, example="1e-2"))


class Full(Method):
    """``conf/paradigm/method/full.yaml``."""


class Partial(Method):
    """``conf/paradigm/method/partial.yaml``."""

    last_groups = whole(0, example=1)
    patterns = each(regex(r"\.bn\d\."), r"['\.bn\d\.']")

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        if node.get("last_groups") == 0 and not node.get("patterns"):
            raise ConfigError(
                join(at, "last_groups"),
                0,
                "with no patterns, nothing below the head would train",
                f"{join(at, 'last_groups')}=1, or give {join(at, 'patterns')}",
            )


class LpFt(Method):
    """``conf/paradigm/method/lp_ft.yaml``."""

    probe_epochs = whole(1, example=5)
    probe_lr = number(0, open_low=True, example="1e-2")


class Gradual(Method):
    """``conf/paradigm/method/gradual.yaml``."""

    every = whole(1, example=1)


class Lora(Method):
    """``conf/paradigm/method/lora.yaml``."""

    r = whole(1, example=4)
    alpha = number(0, open_low=True, example=8)
    dropout = number(0, 1, open_high=True, example=0.1)
    target_modules = regex(r".*\.(conv\d|qkv|proj|fc\d)")
