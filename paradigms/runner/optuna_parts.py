"""Optuna's samplers and pruners chosen by name in the config, and a stored trial reopened in
the job that runs it. Used by our sweeper (hydra_plugins/paradigms_optuna) in the process that
sweeps and by the pruning callback in each trial's job; imported only when a search runs, so
Optuna stays an optional extra (``hpo``).

A name is an Optuna class (``TPESampler``, ``MedianPruner``) or its short form, any case
(``tpe``, ``median``); the other keys of the spec are that class's arguments.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import optuna

from paradigms.runner.errors import ConfigError


def _classes(module: Any, base: type, suffix: str) -> dict[str, type]:
    """Every concrete class of ``module`` derived from ``base``, by name and by short name."""
    found = {}
    for name in dir(module):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, base) and not inspect.isabstract(obj):
            found[name.lower()] = obj
            found[name.lower().removesuffix(suffix)] = obj
    return found


def by_name(module: Any, base: type, suffix: str, key: str, spec: Mapping[str, Any]) -> Any:
    """``spec["name"]``'s class from ``module``, built with the spec's other keys."""
    arguments = dict(spec)
    name = str(arguments.pop("name", ""))
    classes = _classes(module, base, suffix.lower())
    cls = classes.get(name.lower())
    if cls is None:
        close = difflib.get_close_matches(name.lower(), list(classes), n=6, cutoff=0.5)
        names = dict.fromkeys(classes[match].__name__ for match in close or classes)
        raise ConfigError(
            f"{key}.name",
            name,
            f"Optuna has no such {suffix.lower()}",
            f"one of {', '.join(sorted(names) if not close else names)}",
        )
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            key,
            dict(spec),
            str(error).splitlines()[0],
            f"the arguments of optuna.{module.__name__.split('.')[-1]}.{cls.__name__}",
        ) from error


def make_sampler(
    spec: Mapping[str, Any] | None, seed_shift: int = 0, **arguments: Any
) -> optuna.samplers.BaseSampler:
    """The sampler ``spec`` names (TPE when none); a ``seed`` is moved on by ``seed_shift``, so
    a restarted study does not propose its first points again. ``arguments`` are added
    (e.g. GridSampler's ``search_space``)."""
    spec = {"name": "TPESampler", **(spec or {}), **arguments}
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + seed_shift
    return by_name(
        optuna.samplers, optuna.samplers.BaseSampler, "Sampler", "hydra.sweeper.sampler", spec
    )


def make_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner ``spec`` names; none prunes nothing."""
    if not spec:
        return optuna.pruners.NopPruner()
    return by_name(
        optuna.pruners, optuna.pruners.BasePruner, "Pruner", "hydra.sweeper.pruner", spec
    )


def stored_trial(
    storage: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner
) -> optuna.trial.Trial:
    """Trial ``number`` of a stored study, to report to and ask whether to prune, from the
    job that runs it (the sweeping process asked for it)."""
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner)
    study_id = rdb.get_study_id_from_name(study_name)
    return optuna.trial.Trial(study, rdb.get_trial_id_from_study_id_trial_number(study_id, number))
