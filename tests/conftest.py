"""Fixtures every test may use; the helpers they call are in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A fresh output root for one test's runs."""
    return tmp_path / "outputs"
