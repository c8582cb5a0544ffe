"""The small contract every paradigm honours, so cli.py never branches on a paradigm's name.

A paradigm is built from its config group (``conf/paradigm/<name>.yaml``), says what it
``needs`` of the run (the runner refuses a mismatch before any work) and which metrics it
``reports``, and is then asked to ``run(context)``; it returns a ``Result`` whose metrics land
in ``summary.json`` and whose rows form the summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from paradigms.runner.errors import ConfigError
from paradigms.runner.stages import Stages
from paradigms.runner.validation import Check


@dataclass
class Context:
    """What a run hands its paradigm: where to write, the backbone and data specs, the
    source task (if the data defines one), how to train a stage, and what to compare with."""

    run_dir: Path
    seed: int
    backbone: dict[str, Any]
    data: dict[str, Any]
    source: dict[str, Any] | None
    stages: Stages
    compare: list[str]
    cache_dir: Path

    def datamodule(self, overrides: dict[str, Any] | None = None) -> Any:
        """The configured datamodule, optionally with some of its values replaced."""
        return instantiate({**self.data, **(overrides or {})}, seed=self.seed, _convert_="all")


@dataclass
class Row:
    """One model in the summary table: its name and what was measured of it."""

    name: str
    metrics: dict[str, float]
    trainable_params: int | None = None
    total_params: int | None = None


@dataclass
class Result:
    """What a paradigm returns: flat metrics (``summary.json``) and the table's rows."""

    metrics: dict[str, float]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Because(NamedTuple):
    """The setting that makes a need (``data`` when the paradigm always has it), named in
    the error with how to do without it."""

    key: str
    why: str
    fix: str


@dataclass(frozen=True)
class Needs:
    """What a paradigm needs of the run: every split in memory as tensors (``tensors``: why,
    or None for any datamodule; a datamodule holds tensors when its class sets ``in_memory =
    True`` or its config says ``in_memory: true``), the trainer settings it cannot run under (``trainer``: key -> Check) and the
    loggers it can feed (``loggers``: class names, or None for any)."""

    tensors: Because | None = None
    trainer: dict[str, Check] = field(default_factory=dict)
    loggers: tuple[str, ...] | None = None


class Paradigm(Protocol):
    default_compare: tuple[str, ...]  # the baselines ``compare=auto`` trains beside the model
    needs: Needs

    def reports(self, compare: list[str]) -> list[str]:
        """The metric keys ``run`` will report; raises ConfigError for an unknown comparison."""

    def run(self, context: Context) -> Result:
        """Trains and evaluates; raises ConfigError before training for what cannot work."""


def check_needs(needs: Needs, config: dict[str, Any]) -> None:
    """Stops before any work when the run's data, trainer or loggers are not what the
    paradigm needs (``config``: the run's resolved config)."""
    data = config["data"]
    held = data.get("in_memory", getattr(get_class(data["_target_"]), "in_memory", False))
    if needs.tensors and not held:
        key, why, fix = needs.tensors
        source = data["_target_"].rsplit(".", 1)[-1]
        value = source if key == "data" else OmegaConf.select(OmegaConf.create(config), key)
        fix = f"data.in_memory=true (decodes the files once), or {fix}"
        raise ConfigError(key, value, f"{why}; {source} reads its samples from files", fix)
    for key, check in needs.trainer.items():
        check(f"trainer.{key}", config["trainer"].get(key))
    for name, spec in (config.get("logger") or {}).items():
        kind = spec["_target_"].rsplit(".", 1)[-1] if spec else None
        if kind and needs.loggers is not None and kind not in needs.loggers:
            raise ConfigError(
                f"logger.{name}",
                kind,
                f"this paradigm writes its metrics to {', '.join(needs.loggers)} only",
                "logger=csv",
            )


def check_optimized_metric(name: str, reported: list[str]) -> None:
    """Stops before training when the sweeper's metric is not one the run will report."""
    if name not in reported:
        raise ConfigError(
            "optimized_metric",
            name,
            "this paradigm does not report it",
            f"use one of {', '.join(reported)}",
        )


def check_compare(paradigm: str, compare: list[str], allowed: tuple[str, ...]) -> None:
    """Stops before training on a baseline this paradigm cannot train."""
    unknown = [c for c in compare if c not in allowed]
    if unknown:
        raise ConfigError(
            "compare",
            unknown[0],
            f"{paradigm} compares with: {', '.join(allowed)}",
            f"use compare={allowed[0]} or none",
        )
