"""Checks of the composed config that need no torch, run before anything is built.

Each rule names a key, a test of its value, why a failing value cannot work and the fix;
a missing key is skipped (a group that does not have it). Paradigm-specific combinations
are checked by the paradigm itself before it trains.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from paradigms.models.names import unknown_model_hint
from paradigms.runner.errors import ConfigError
from paradigms.runner.extras import check_extras
from paradigms.runner.run_dirs import find_run_dir, resumes_saved_run

Rule = tuple[str, Callable[[Any], bool], str, str]

_MISSING = object()


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and 0.0 < value < 1.0


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


RULES: list[Rule] = [
    ("seed", lambda v: isinstance(v, int) and v >= 0, "must be a whole number >= 0", "seed=0"),
    ("trainer.max_epochs", _positive_int, "must be a whole number >= 1", "trainer.max_epochs=10"),
    (
        "trainer.accumulate_grad_batches",
        _positive_int,
        "must be a whole number >= 1",
        "trainer.accumulate_grad_batches=1",
    ),
    (
        "paradigm.optimizer.lr",
        _positive,
        "a learning rate must be > 0",
        "paradigm.optimizer.lr=1e-3",
    ),
    (
        "paradigm.optimizer.weight_decay",
        _non_negative,
        "must be >= 0",
        "paradigm.optimizer.weight_decay=0.05",
    ),
    (
        "paradigm.label_smoothing",
        lambda v: _non_negative(v) and v < 1,
        "must be in [0, 1)",
        "paradigm.label_smoothing=0.1",
    ),
    (
        "paradigm.scheduler.name",
        lambda v: v in ("cosine", "constant"),
        "unknown schedule",
        "cosine or constant",
    ),
    (
        "paradigm.scheduler.warmup_fraction",
        lambda v: _non_negative(v) and v < 1,
        "must be in [0, 1)",
        "paradigm.scheduler.warmup_fraction=0.1",
    ),
    (
        "paradigm.head.hidden",
        lambda v: isinstance(v, list) and all(_positive_int(h) for h in v),
        "must be a list of layer widths >= 1",
        "paradigm.head.hidden=[256] (or [] for a linear head)",
    ),
    (
        "paradigm.head.dropout",
        lambda v: _non_negative(v) and v < 1,
        "must be in [0, 1)",
        "paradigm.head.dropout=0.1",
    ),
    (
        "paradigm.head.activation",
        lambda v: v in ("gelu", "relu", "silu", "tanh"),
        "unknown activation",
        "gelu, relu, silu or tanh",
    ),
    (
        "paradigm.replace_last_blocks",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "must be a whole number >= 0",
        "paradigm.replace_last_blocks=1",
    ),
    (
        "paradigm.cache_features",
        lambda v: v in ("auto", True, False),
        "must be auto, true or false",
        "paradigm.cache_features=auto",
    ),
    ("data.batch_size", _positive_int, "must be a whole number >= 1", "data.batch_size=64"),
    ("data.image_size", _positive_int, "must be a whole number >= 1", "data.image_size=32"),
    ("data.val_fraction", _fraction, "must be in (0, 1)", "data.val_fraction=0.15"),
    ("data.test_fraction", _fraction, "must be in (0, 1)", "data.test_fraction=0.15"),
    (
        "data.train_per_class",
        lambda v: v is None or _positive_int(v),
        "must be null or >= 1",
        "data.train_per_class=10",
    ),
    ("backbone.in_chans", _positive_int, "must be a whole number >= 1", "backbone.in_chans=3"),
    (
        "backbone.name",
        lambda v: isinstance(v, str) and bool(v),
        "must name a timm model",
        "backbone=mobilenetv3_small_050",
    ),
    ("nonfinite", lambda v: v in ("stop", "skip"), "must be stop or skip", "nonfinite=stop"),
    (
        "backbone.trust_pickle",
        lambda v: isinstance(v, bool),
        "must be true or false",
        "backbone.trust_pickle=false",
    ),
    (
        "optimized_metric",
        lambda v: isinstance(v, str) and bool(re.fullmatch(r"([\w-]+/)*(val|test)/\w+", v)),
        "must look like [stage/]val|test/<metric>",
        "optimized_metric=test/acc",
    ),
]


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def compare_list(value: Any, default: tuple[str, ...] = ()) -> list[str]:
    """``compare`` as a list: ``auto`` -> the paradigm's default, ``none`` -> [],
    ``scratch`` -> ['scratch']."""
    if value == "auto":
        return list(default)
    if value in (None, "none", "") or value == []:
        return []
    return [value] if isinstance(value, str) else list(value)


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError for the first value that cannot work."""
    check_extras(cfg)
    for key, ok, why, fix in RULES:
        value = _value(cfg, key)
        if value is not _MISSING and not ok(value):
            raise ConfigError(key, value, why, fix)
    fractions = [_value(cfg, k) for k in ("data.val_fraction", "data.test_fraction")]
    if _MISSING not in fractions and sum(fractions) >= 1:
        raise ConfigError(
            "data.val_fraction",
            fractions[0],
            "val and test fractions leave no training data",
            "keep data.val_fraction + data.test_fraction below 1",
        )
    name = _value(cfg, "backbone.name")
    hint = unknown_model_hint(name) if isinstance(name, str) else None
    if hint is not None:
        raise ConfigError("backbone.name", name, "timm has no such model", hint)
    weights = _value(cfg, "backbone.weights")
    if (
        weights not in (None, _MISSING, "none", "timm")
        and not Path(str(weights)).expanduser().exists()
    ):
        raise ConfigError(
            "backbone.weights",
            weights,
            "no such file or run directory",
            "give a .safetensors/.pth/.ckpt file, a run directory, 'timm' or 'none'",
        )
    _check_data_paths(cfg)
    resume = _value(cfg, "resume")
    if resumes_saved_run(resume) and find_run_dir(str(resume)) is None:
        raise ConfigError(
            "resume",
            resume,
            "not a run directory of this tool (no .hydra/config.yaml above it)",
            "give outputs/<paradigm>/<date>/<time>_<id>, a checkpoint inside it, or auto",
        )


def _check_data_paths(cfg: DictConfig) -> None:
    """The files a datamodule reads must be named, and its root must exist (unless the
    datamodule is about to download into it)."""
    data = cfg.get("data")
    for name in ("root", "csv", "path"):
        if data is not None and OmegaConf.is_missing(data, name):
            raise ConfigError(
                f"data.{name}", "???", "must be set", f"data.{name}=/path/to/your/data"
            )
    root = _value(cfg, "data.root")
    downloads = _value(cfg, "data.download") is True
    if root is not _MISSING and not downloads and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(
            "data.root", root, "no such folder", "give the folder holding your images"
        )
