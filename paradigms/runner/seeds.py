"""``seeds=N`` on the command line: the same runs repeated over N seeds, as one multirun.

``python cli.py seeds=3 paradigm/method=full,lp_ft`` runs each method with ``seed=0,1,2``
(``seed=10 seeds=3``: 10, 11, 12), so the sweep report shows each configuration's mean and
95% interval over its seeds. It becomes Hydra's own sweep (``seed=range(0,3)`` and ``-m``)
before Hydra parses the command line, so it combines with any other swept key, any sweeper's
launcher and an experiment's own ``hydra.sweeper.params`` (the command line wins over those).
"""

from __future__ import annotations

from paradigms.runner.errors import ConfigError

KEY = "seeds"
MULTIRUN_FLAGS = ("-m", "--multirun")


def _value(args: list[str], key: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == key]
    return values[-1] if values else None


def expand_seeds(args: list[str]) -> list[str]:
    """``args`` (the command line after the program) with ``seeds=N`` replaced by
    ``seed=range(first,first+N)`` and ``-m``; unchanged without it. Raises ConfigError for N
    that is not a whole number >= 1, or for ``seed`` swept as well."""
    count = _value(args, KEY)
    if count is None:
        return args
    if not count.isdigit() or int(count) < 1:
        shown = int(count) if count.lstrip("-").isdigit() else count
        raise ConfigError(KEY, shown, "must be a whole number >= 1 (how many seeds)", "seeds=3")
    first = _value(args, "seed") or "0"
    if not first.lstrip("-").isdigit():
        raise ConfigError(
            "seed",
            first,
            "seeds= sweeps the seed itself, from one first seed",
            f"give one first seed (seed=0 seeds={count}) or sweep seed without seeds=",
        )
    kept = [a for a in args if a.split("=", 1)[0] not in (KEY, "seed")]
    flags = [] if any(a in MULTIRUN_FLAGS for a in args) else ["-m"]
    start = int(first)
    return [*flags, *kept, f"seed=range({start},{start + int(count)})"]
