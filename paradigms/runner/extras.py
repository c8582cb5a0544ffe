"""Parts of the tool that need an optional extra (pyproject.toml): choosing one whose extra is
not installed stops before anything runs, with the ``pip install`` to run.

Each part is recognised in the composed config (a ``_target_`` or a value), not by importing
it, so the check costs milliseconds and runs before torch is imported. It runs inside
``validate``: in ``cli.py`` for a run, and before the first job for a multirun, where it also
sees the sweeper and the launcher (our YAMLs for those compose without the plugin installed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from paradigms.runner.errors import ConfigError


def _targets(value: Any) -> Iterator[str]:
    """Every ``_target_`` in a config value, however deep."""
    if isinstance(value, Mapping):
        if isinstance(value.get("_target_"), str):
            yield value["_target_"]
        for item in value.values():
            yield from _targets(item)


def targets(fragment: str) -> Callable[[Any], bool]:
    """A test: does some ``_target_`` in the value contain ``fragment``?"""
    return lambda value: any(fragment in target for target in _targets(value))


@dataclass(frozen=True)
class Part:
    """An optional part: where the config chooses it, how to recognise it, what it imports."""

    groups: tuple[str, ...]  # the groups a user picks it with, first chosen one named in errors
    key: str  # where the composed config holds the choice
    chosen: Callable[[Any], bool]
    module: str  # the module the extra installs
    extra: str  # pip install -e '.[extra]'


PARTS = (
    Part(("logger",), "logger", targets("TensorBoardLogger"), "tensorboard", "tensorboard"),
    Part(("logger",), "logger", targets("MLFlowLogger"), "mlflow", "mlflow"),
    Part(("logger",), "logger", targets("WandbLogger"), "wandb", "wandb"),
    Part(
        ("hparams_search", "hydra/sweeper"),
        "hydra.sweeper",
        targets("hydra_plugins.paradigms_optuna."),
        "optuna",
        "hpo",
    ),
    Part(
        ("hydra/launcher",),
        "hydra.launcher",
        targets("hydra_plugins.hydra_joblib_launcher."),
        "hydra_plugins.hydra_joblib_launcher",
        "parallel",
    ),
    Part(
        ("hydra/launcher",),
        "hydra.launcher",
        targets("hydra_plugins.hydra_submitit_launcher."),
        "hydra_plugins.hydra_submitit_launcher",
        "slurm",
    ),
    Part(("paradigm/privacy",), "paradigm.privacy", targets("privacy.ClientDP"), "opacus", "dp"),
    Part(("paradigm/method",), "paradigm.method", targets("methods.Lora"), "peft", "lora"),
    Part(("data",), "data", targets("datamodules.hf."), "datasets", "hf"),
)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _choices(cfg: DictConfig) -> dict[str, Any]:
    """The group choices of this composition (a multirun's config holds them; a job's are
    Hydra's)."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices")
    if choices is None and HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    return dict(choices or {})


def check_extras(cfg: DictConfig) -> None:
    """Raises ConfigError for the first chosen part whose extra is not installed, naming every
    extra that choice needs (``logger=all`` needs several)."""
    choices = _choices(cfg)
    missing: dict[tuple[str, Any], list[str]] = {}
    for part in PARTS:
        value = OmegaConf.select(cfg, part.key, throw_on_missing=False)
        plain = (
            OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
        )
        if value is None or not part.chosen(plain) or installed(part.module):
            continue
        group = next((g for g in part.groups if choices.get(g)), part.groups[-1])
        shown = choices.get(group, plain if isinstance(plain, str) else "...")
        missing.setdefault((group, shown), []).append(part.extra)
    if missing:
        (group, shown), extras = next(iter(missing.items()))
        raise ConfigError(
            group,
            shown,
            f"needs the optional extra{'s' if len(extras) > 1 else ''} {', '.join(extras)} "
            "(not installed)",
            f"pip install -e '.[{','.join(extras)}]'",
        )
