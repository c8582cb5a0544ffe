"""Image transforms resolved from the backbone, built by timm.

Mean, std, interpolation and crop come from the backbone's pretrained config (timm
``resolve_data_config`` on ``get_pretrained_cfg``: no weights are built or fetched) unless the
config sets them; training augmentation is timm's ``create_transform(is_training=True)``
(random resized crop, flips, RandAugment / TrivialAugment, random erasing). Evaluation
transforms are deterministic: resize, centre crop, normalise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg

from paradigms.runner.errors import ConfigError

Transform = Callable[[Any], Any]


def resolve(
    backbone: str, image_size: int | None, in_chans: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    """timm's data config of ``backbone`` with the configured values laid over it."""
    cfg = get_pretrained_cfg(backbone, allow_unregistered=True)
    args = {k: v for k, v in overrides.items() if v is not None}
    if image_size is not None:
        args["input_size"] = (in_chans, image_size, image_size)
    resolved = resolve_data_config(args, pretrained_cfg=cfg.to_dict() if cfg else None)
    resolved["input_size"] = (in_chans, *resolved["input_size"][1:])
    for key in ("mean", "std"):
        value = resolved[key]
        value = (value,) if isinstance(value, (int, float)) else tuple(value)
        if len(value) != in_chans:  # e.g. RGB statistics for a one-channel backbone
            value = (sum(value) / len(value),) * in_chans if len(value) == 3 else value
        if len(value) != in_chans:
            raise ConfigError(
                f"data.{key}",
                list(value),
                f"needs one value per input channel ({in_chans})",
                f"data.{key}=null",
            )
        resolved[key] = value
    return resolved


def build_transforms(
    backbone: str,
    image_size: int | None,
    in_chans: int,
    normalize: dict[str, Any],
    augment: dict[str, Any],
) -> tuple[Transform, Transform]:
    """(training, evaluation) transforms of a PIL image to a normalised tensor.

    ``normalize`` holds mean, std, interpolation, crop_pct (null: the backbone's);
    ``augment`` holds create_transform's training options (scale, ratio, hflip, vflip,
    color_jitter, auto_augment, re_prob, ...); ``augment.enabled=false`` trains on the
    evaluation transform.
    """
    data = resolve(backbone, image_size, in_chans, normalize)
    common = {
        "input_size": data["input_size"],
        "interpolation": data["interpolation"],
        "mean": data["mean"],
        "std": data["std"],
    }
    evaluation = create_transform(
        **common, is_training=False, crop_pct=data["crop_pct"], crop_mode=data["crop_mode"]
    )
    options = dict(augment)
    if not options.pop("enabled", True):
        return evaluation, evaluation
    for key in ("scale", "ratio"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    try:
        training = create_transform(**common, is_training=True, **options)
    except (TypeError, ValueError, AssertionError) as error:
        raise ConfigError(
            "data.augment",
            augment,
            f"timm create_transform refused it ({error})",
            "see timm.data.create_transform for the options",
        ) from error
    return training, evaluation
