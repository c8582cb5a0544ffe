"""Fixtures every test may use; the helpers they call are in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Gives each pytest-xdist worker its own share of the cores, so the runs it starts take
    that share (threads=auto) instead of every worker's runs fighting for all of them."""
    worker, count = (
        os.environ.get("PYTEST_XDIST_WORKER"),
        os.environ.get("PYTEST_XDIST_WORKER_COUNT"),
    )
    if worker and count and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        index, workers = int(worker.removeprefix("gw")), int(count)
        if len(cores) >= workers:
            os.sched_setaffinity(0, cores[index::workers])


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A fresh output root for one test's runs."""
    return tmp_path / "outputs"
