"""The checks every run makes before any work, in one place for cli.py and the sweep
callback: validate the config (before torch is imported), build the paradigm, check what it
needs of the data, trainer and loggers, and that it reports the metric a sweeper optimizes.
Each failure is a one-line ``ConfigError``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from paradigms.runner.validation import job_config, validate


@dataclass
class Checked:
    """A run that passed the checks: its paradigm, the baselines to train beside it, and the
    config as plain containers."""

    paradigm: Any
    compare: list[str]
    config: dict[str, Any]


def compare_list(value: Any, default: tuple[str, ...] = ()) -> list[str]:
    """``compare`` as a list: ``auto`` -> the paradigm's default, ``none`` -> [],
    ``scratch`` -> ['scratch']."""
    if value == "auto":
        return list(default)
    if value in (None, "none", "") or value == []:
        return []
    return [value] if isinstance(value, str) else list(value)


def preflight(cfg: DictConfig) -> Checked:
    """Validates, builds the paradigm and checks it against the run; raises ConfigError."""
    validate(cfg)
    from hydra.utils import instantiate

    from paradigms.contract import check_needs, check_optimized_metric

    config = job_config(cfg)
    paradigm = instantiate(config["paradigm"], _convert_="all")
    compare = compare_list(config["compare"], paradigm.default_compare)
    check_needs(paradigm.needs, config)
    check_optimized_metric(config["optimized_metric"], paradigm.reports(compare))
    return Checked(paradigm, compare, config)
