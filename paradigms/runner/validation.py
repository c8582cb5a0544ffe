"""Checks of the composed config that need no torch, run before anything is built.

Every configurable component declares its settings in a torch-free ``Schema`` beside it: the
class of the same name in the ``schema`` module of the component's package. The node
``_target_: paradigms.federated.strategies.Krum`` is checked by
``paradigms.federated.schema.Krum``; a node without a ``_target_`` (``paradigm.optimizer``)
by the schema its parent declares for it. ``validate`` walks the whole config from the run's
own schema (``paradigms.runner.schema.Run``) and stops at the first value that cannot work,
with one line: its key, its value, why, and the fix. A component without a schema is built
as it is; what needs torch or the data is checked by the component itself, before training.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from paradigms.runner.errors import ConfigError
from paradigms.runner.extras import check_extras

MISSING = "???"  # OmegaConf's mandatory value, left for the user to set


@dataclass(frozen=True)
class Check:
    """One setting's rule: ``test(value)`` holds for a value that can work; otherwise ``why``
    and ``fix`` make the error (``{key}`` in the fix stands for the setting's full key; a
    callable fix is given the value)."""

    test: Callable[[Any], bool]
    why: str
    fix: str | Callable[[Any], str]

    def __call__(self, key: str, value: Any) -> None:
        if not self.test(value):
            fix = self.fix(value) if callable(self.fix) else self.fix.format(key=key)
            raise ConfigError(key, value, self.why, fix)


@dataclass(frozen=True)
class Each:
    """A node whose every child node is checked by ``schema`` (multitask's tasks, by name)."""

    schema: type[Schema]


class Schema:
    """The settings of one configurable component, declared as class attributes: a ``Check``
    (or a tuple of them) tests the value under that name, a ``Schema`` subclass checks the
    child node under that name (unless the child names its own by ``_target_``), an ``Each``
    checks every child of it. ``relations`` holds the rules that span several settings.
    A subclass inherits its base's settings, as the component inherits its base's knobs.
    """

    @classmethod
    def settings(cls) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, rule in vars(klass).items():
                checks = isinstance(rule, tuple) and all(isinstance(c, Check) for c in rule)
                if checks or isinstance(rule, (Check, Each)) or _is_schema(rule):
                    found[name] = rule
        return found

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        """Raises ConfigError for settings that cannot work together (``at``: the node's key)."""


def _is_schema(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Schema)


def join(at: str, name: str) -> str:
    """The full key of setting ``name`` of the node at ``at``."""
    return f"{at}.{name}" if at else name


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    if low is None and high is None:
        return "must be a number"
    if high is None:
        return f"must be {'>' if open_low else '>='} {low}"
    if low is None:
        return f"must be {'<' if open_high else '<='} {high}"
    return f"must be in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
    example: float | str,
    why: str | None = None,
) -> Check:
    """A real number within bounds (``open_*``: the bound itself is excluded); ``why`` says
    what it is when the bounds alone do not."""

    def test(value: Any) -> bool:
        if not _real(value):
            return False
        above = low is None or (value > low if open_low else value >= low)
        below = high is None or (value < high if open_high else value <= high)
        return above and below

    return Check(test, why or _bounds(low, high, open_low, open_high), f"{{key}}={example}")


def whole(low: int = 0, high: int | None = None, *, example: int | None = None) -> Check:
    """A whole number within [low, high]."""

    def test(value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= low
            and (high is None or value <= high)
        )

    within = f">= {low}" if high is None else f"in [{low}, {high}]"
    return Check(
        test, f"must be a whole number {within}", f"{{key}}={low if example is None else example}"
    )


def one_of(*choices: Any) -> Check:
    """One of ``choices``."""
    named = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
    return Check(
        lambda v: any(v == c and type(v) is type(c) for c in choices),
        f"must be one of {named}",
        f"use one of {named}",
    )


def flag() -> Check:
    """true or false."""
    return Check(lambda v: isinstance(v, bool), "must be true or false", "{key}=false")


def optional(check: Check) -> Check:
    """null, or a value ``check`` accepts."""
    return Check(lambda v: v is None or check.test(v), f"{check.why} (or null)", check.fix)


def each(check: Check, example: str) -> Check:
    """A list whose every item ``check`` accepts."""
    return Check(
        lambda v: isinstance(v, list) and all(check.test(item) for item in v),
        f"must be a list; each item {check.why}",
        f"{{key}}={example}",
    )


def text(example: str) -> Check:
    """A non-empty string."""
    return Check(
        lambda v: isinstance(v, str) and bool(v), "must be a non-empty text", f"{{key}}={example}"
    )


def regex(example: str) -> Check:
    """A regular expression Python can compile."""

    def test(value: Any) -> bool:
        try:
            re.compile(value)
        except (re.error, TypeError):
            return False
        return True

    return Check(test, "must be a regular expression Python can compile", f"{{key}}='{example}'")


@cache
def schema_for(target: Any) -> type[Schema] | None:
    """The schema of the class ``target`` names: the class of the same name in the ``schema``
    module of its package (looked for as a file first, so no other package is imported)."""
    if not isinstance(target, str) or target.count(".") < 2:
        return None
    module, _, name = target.rpartition(".")
    package = module.rpartition(".")[0]
    top, *inner = package.split(".")
    spec = importlib.util.find_spec(top)
    places = spec.submodule_search_locations if spec else None
    if not places or not any(Path(p, *inner, "schema.py").is_file() for p in places):
        return None
    found = getattr(importlib.import_module(f"{package}.schema"), name, None)
    return found if _is_schema(found) else None


def check_node(node: dict[str, Any], at: str, declared: type[Schema] | None = None) -> None:
    """Checks ``node`` (the config at key ``at``) and every node below it."""
    for name, value in node.items():
        if value == MISSING:
            raise ConfigError(join(at, name), MISSING, "must be set", f"{join(at, name)}=...")
    schema = schema_for(node.get("_target_")) or declared
    rules = schema.settings() if schema else {}
    for name, rule in rules.items():
        if name in node and not isinstance(rule, Each) and not _is_schema(rule):
            for check in rule if isinstance(rule, tuple) else (rule,):
                check(join(at, name), node[name])
    if schema:
        schema.relations(node, at)
    for name, value in node.items():
        if not isinstance(value, dict):
            continue
        rule = rules.get(name)
        if isinstance(rule, Each):
            for child, spec in value.items():
                if isinstance(spec, dict):
                    check_node(spec, join(join(at, name), child), rule.schema)
        else:
            check_node(value, join(at, name), rule if _is_schema(rule) else None)


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config (without Hydra's own node) as plain containers, interpolations
    resolved and mandatory values left as ``???``."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(job, resolve=True, throw_on_missing=False)


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError for the first value of the composed config that cannot work."""
    from paradigms.runner.schema import Run  # it is declared with this module's pieces

    check_extras(cfg)
    check_node(job_config(cfg), "", Run)
