"""The command line: help, config printing, one-line errors that leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from paradigms.runner.choices import check_choices
from tests.helpers import CONF, ROOT, cli


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_paradigm_and_user_group_and_no_internal_one() -> None:
    started = time.perf_counter()
    process = _run("--help")
    assert process.returncode == 0
    text = process.stdout
    assert 40 <= len(text.splitlines()) <= 70 and "powered by Hydra" not in text
    paradigms = text.split("Paradigms (paradigm=<name>):")[1].split("Options")[0]
    listed = {line.split()[0] for line in paradigms.splitlines() if line.strip()}
    assert listed == {p.stem for p in (CONF / "paradigm").glob("*.yaml")}
    options = text.split("Options (group=option):")[1].split("Any setting")[0]
    groups = {
        line.split()[0] for line in options.splitlines() if line.startswith("  ") and line[2] != " "
    }
    assert {
        "backbone",
        "data",
        "trainer",
        "logger",
        "paradigm/method",
        "paradigm/strategy",
    } <= groups
    assert not groups & {"images", "scenario", "callbacks", "scenario/digits"}
    assert "mobilenetv3_small_050" in options and "trainer/default" not in text
    assert "cpu (default)" in options and ", default" not in options
    examples = [
        line.split("   ")[0].split()[2:]
        for line in text.splitlines()
        if line.startswith("  python cli.py")
    ]
    assert len(examples) == 6
    for example in examples:  # every option an example names exists
        check_choices([a for a in example if "<" not in a], CONF)
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
