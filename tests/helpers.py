"""What tests share: run the real CLI in a subprocess, on tiny settings, in a temp output root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A real timm model that learns digits in a few seconds on a CPU, without progress bars.
FAST = [
    "backbone=test_resnet",
    "trainer.max_epochs=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
]


def cli(
    *overrides: str, output_root: Path, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Runs ``python cli.py`` with ``overrides`` writing under ``output_root``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    flags = [o for o in overrides if o.startswith("-")]
    values = [o for o in overrides if not o.startswith("-")]
    process = subprocess.run(
        [sys.executable, "cli.py", *flags, f"paths.output_root={output_root}", *values],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"cli failed ({process.returncode}):\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    return process


def run_dirs(output_root: Path, paradigm: str) -> list[Path]:
    """Run directories of ``paradigm`` under ``output_root``, oldest first."""
    return sorted((output_root / paradigm).glob("*/*"))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
