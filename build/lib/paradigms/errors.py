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


@contextmanager
def reported(run_dir: Path, fresh: bool, debug: bool, multirun: bool = False) -> Iterator[None]:
    """Turns a ConfigError into one line on stderr and exit code 2. A run directory created
    for this run is removed again, so a run that fails validation leaves nothing behind.

    In a multirun the error is printed and raised instead: exiting would end the whole sweep,
    while Hydra records a raised error as this job's failure and the sweep goes on."""
    try:
        yield
    except ConfigError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        if multirun:
            raise
        if fresh:
            _remove_new_run_dir(run_dir)
        sys.exit(2)


def _remove_new_run_dir(run_dir: Path) -> None:
    """Removes ``run_dir`` and the date/paradigm folders above it that it leaves empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in list(run_dir.parents)[:3]:
        try:
            parent.rmdir()
        except OSError:
            break
