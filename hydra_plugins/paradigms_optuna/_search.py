"""What the sweeper does with Optuna: the search space from Hydra's sweep syntax, GridSampler's
grid, and a finished job told to its trial. Imported only when a search runs (Hydra's plugin
scan skips modules whose name starts with ``_``), so Hydra starts without Optuna installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override, Transformer
from hydra.core.utils import JobReturn
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from paradigms.runner.errors import ConfigError

Space = dict[str, BaseDistribution]


def _range(override: Override) -> BaseDistribution:
    """``range(start, stop, step)``: Hydra's values (stop excluded), ordered for the sampler."""
    values = list(override.sweep_iterator())
    sweep = override.value()
    if all(isinstance(v, int) for v in values):
        return IntDistribution(values[0], values[-1], step=int(sweep.step))
    return FloatDistribution(values[0], values[-1], step=float(sweep.step))


def distribution(override: Override) -> BaseDistribution:
    """``choice(a, b)``, ``range(1, 5)``, ``interval(0, 1)`` or ``tag(log, interval(...))``
    as the Optuna distribution a trial samples from."""
    key = override.get_key_element()
    if override.is_choice_sweep() and not isinstance(override.value(), Glob):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep() and not override.value().shuffle:
        return _range(override)
    if override.is_interval_sweep():
        sweep = override.value()
        return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    raise ConfigError(
        key,
        override.get_value_element_as_str(),
        "the Optuna sweeper cannot search this",
        "choice(a, b), range(1, 5), interval(0.0, 1.0) or tag(log, interval(1e-4, 1e-1))",
    )


def search_space(params: Mapping[str, Any], arguments: list[str]) -> tuple[Space, list[str]]:
    """The distributions to search and the fixed overrides every trial gets, from the sweeper's
    ``params`` then the command line's overrides (a later one wins: ``key=value`` on the
    command line fixes a searched key, ``key=choice(...)`` searches it)."""
    overrides = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: Space = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def grid(space: Space) -> dict[str, list[Any]]:
    """GridSampler's ``search_space``: every value of each (finite) distribution."""
    values = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = list(dist.choices)
        elif dist.step is not None:
            count = round((dist.high - dist.low) / dist.step) + 1
            values[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ConfigError(
                f"hydra.sweeper.params.{key}",
                "interval",
                "GridSampler needs a finite set of values",
                "choice(...) or range(...) for every searched key",
            )
    return values


def grid_size(space: Space) -> int:
    return math.prod(len(values) for values in grid(space).values())


def tell(study: optuna.Study, trial: optuna.trial.Trial, job: JobReturn) -> None:
    """Records a finished job in its trial: COMPLETE with its value, PRUNED when the pruner
    stopped it, FAIL when it failed (a failed job reaches here as NaN unless
    ``sweep.fail_fast``, whose error is raised again to stop the sweep)."""
    try:
        value = float(job.return_value)
    except optuna.TrialPruned:
        _told(study, trial, state=optuna.trial.TrialState.PRUNED)
        return
    except Exception:
        _told(study, trial, state=optuna.trial.TrialState.FAIL)
        raise
    if math.isnan(value):
        _told(study, trial, state=optuna.trial.TrialState.FAIL)
    else:
        _told(study, trial, values=value)


def _told(study: optuna.Study, trial: optuna.trial.Trial, **outcome: Any) -> None:
    """``study.tell``. Under ask-and-tell, GridSampler raises RuntimeError ("Study.stop ...")
    once its last point is told, after the trial is stored (Optuna's GridSampler docs)."""
    try:
        study.tell(trial, **outcome)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise
