"""The small contract every paradigm honours, so cli.py never branches on a paradigm's name.

A paradigm is built from its config group (``conf/paradigm/<name>.yaml``) and then asked to
``run(context)``; it returns a ``Result`` whose metrics land in ``summary.json`` and whose
rows form the summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hydra.utils import instantiate

from paradigms.runner.errors import ConfigError
from paradigms.runner.stages import Stages


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


class Paradigm(Protocol):
    def reports(self, compare: list[str]) -> list[str]:
        """The metric keys ``run`` will report; raises ConfigError for an unknown comparison."""

    def run(self, context: Context) -> Result:
        """Trains and evaluates; raises ConfigError before training for what cannot work."""


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
