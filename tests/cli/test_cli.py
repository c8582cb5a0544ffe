"""The command line: help, config printing, one-line errors that leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_groups_and_their_options() -> None:
    started = time.perf_counter()
    process = _run("--help")
    assert process.returncode == 0
    listing = process.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    groups = dict(line.split(": ", 1) for line in listing.splitlines() if ": " in line)
    assert {"finetune", "scratch", "transfer", "multitask", "federated", "distill"} <= set(
        groups["paradigm"].replace(" ", "").split(",")
    )
    assert {"cpu", "gpu", "bf16", "ddp", "ddp_cpu"} <= set(
        groups["trainer"].replace(" ", "").split(",")
    )
    assert "digits" in groups["data"]
    assert "mobilenetv3_small_050" in process.stdout
    assert time.perf_counter() - started < 10


def test_cfg_job_prints_the_composed_config() -> None:
    process = _run("--cfg", "job", "paradigm=scratch", "trainer.max_epochs=7")
    assert process.returncode == 0
    assert "_target_: paradigms.scratch.paradigm.Scratch" in process.stdout
    assert "max_epochs: 7" in process.stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("paradigm.optimizer.lr=-1", "paradigm.optimizer.lr"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("backbone.name=resnet_18", "backbone.name"),
        ("backbone.weights=/no/such/file.safetensors", "backbone.weights"),
        ("optimized_metric=test/accuracyy", "optimized_metric"),
        ("compare=single_task", "compare"),
    ],
)
def test_bad_input_stops_with_one_line_and_writes_nothing(
    override: str, key: str, out: Path
) -> None:
    process = cli(override, output_root=out, check=False)
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}="), process.stderr
    assert "Fix:" in lines[0]
    assert not out.exists() or not any(out.iterdir()), (
        "a failed validation must leave outputs/ empty"
    )


def test_unknown_backbone_suggests_close_names(out: Path) -> None:
    process = cli("backbone.name=resnet_18", output_root=out, check=False)
    assert "resnet18" in process.stderr
