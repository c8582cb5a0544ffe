"""The one error a user sees for bad input: which key, which value, why, and the fix."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Raised before training when a config value cannot work; printed as one line."""

    def __init__(self, key: str, value: Any, why: str, fix: str) -> None:
        self.key, self.value, self.why, self.fix = key, value, why, fix
        super().__init__(f"{key}={value!r}: {why}. Fix: {fix}")


class RunError(RuntimeError):
    """A run that cannot go on (e.g. a diverged loss); printed as one line, exit code 3."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM (e.g. SLURM pre-emption) stopped a stage; it can be resumed."""

    def __init__(self, run_dir: Path, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(
            f"{signal_name}: stopped. Every completed epoch is checkpointed; "
            f"continue with: python cli.py resume={run_dir}"
        )


@contextmanager
def reported(run_dir: Path, fresh: bool, debug: bool, multirun: bool = False) -> Iterator[None]:
    """Turns a ConfigError into one line on stderr and exit code 2 (a RunError: exit code 3;
    an interruption: 130 or 143 with how to resume). A run directory created for a run that
    fails validation is removed again, so it leaves nothing behind.

    In a multirun the error is printed and raised instead: exiting would end the whole sweep,
    while Hydra records a raised error as this job's failure and the sweep goes on."""
    try:
        yield
    except (ConfigError, RunError) as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        if multirun:
            raise
        bad_input = isinstance(error, ConfigError)
        if bad_input and fresh:
            _remove_new_run_dir(run_dir)
        sys.exit(2 if bad_input else 3)
    except (Interrupted, KeyboardInterrupt) as stop:
        if isinstance(stop, KeyboardInterrupt):
            stop = Interrupted(run_dir, "SIGINT")
        print(f"interrupted by {stop}", file=sys.stderr)
        sys.exit(143 if stop.signal_name == "SIGTERM" else 130)


def _remove_new_run_dir(run_dir: Path) -> None:
    """Removes ``run_dir`` (unless something besides Hydra's config and log was written) and
    the date/paradigm folders above it that it leaves empty."""
    if run_dir.is_dir() and any(
        p.suffix != ".log" and p.name != ".hydra" for p in run_dir.iterdir()
    ):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in list(run_dir.parents)[:3]:
        try:
            parent.rmdir()
        except OSError:
            break
