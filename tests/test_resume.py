"""A run killed mid-training and resumed ends exactly as an uninterrupted one (CPU, same seed)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import FAST, ROOT, cli, run_dirs, summary

RUN = [*FAST, "paradigm=scratch", "trainer.max_epochs=5"]


def _kill_after_checkpoint(output_root: Path, epochs_done: int, run: list[str] = RUN) -> Path:
    """Starts a run, SIGKILLs it once ``epochs_done`` epochs are checkpointed; returns its dir."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "cli.py", f"paths.output_root={output_root}", *run],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        dirs = run_dirs(output_root, "scratch")
        metrics = dirs[0] / "metrics.csv" if dirs else None
        if metrics and metrics.is_file() and (dirs[0] / "checkpoints" / "last.ckpt").is_file():
            epochs = {row["epoch"] for row in csv.DictReader(metrics.open()) if row.get("val/acc")}
            if len(epochs) >= epochs_done:
                break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dirs(output_root, "scratch")[0] / "summary.json").exists(), "killed too late"
    return run_dirs(output_root, "scratch")[0]


def _epochs(run_dir: Path) -> list[str]:
    return [
        row["epoch"]
        for row in csv.DictReader((run_dir / "metrics.csv").open())
        if row.get("val/acc")
    ]


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    full = tmp_path / "full"
    cli(*RUN, output_root=full)
    expected = summary(run_dirs(full, "scratch")[0])["metrics"]

    killed = _kill_after_checkpoint(tmp_path / "killed", epochs_done=2)
    cli(f"resume={killed}", output_root=tmp_path / "killed")

    assert run_dirs(tmp_path / "killed", "scratch") == [killed], (
        "resume must reuse the run directory"
    )
    assert summary(killed)["metrics"] == expected
    assert _epochs(killed) == ["0", "1", "2", "3", "4"], (
        "metrics.csv keeps every epoch exactly once"
    )
    assert (killed / ".hydra" / "config.yaml").is_file()
