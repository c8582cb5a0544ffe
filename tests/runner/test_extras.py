"""Optional extras: a run needs none of them, and choosing a part whose extra is missing stops
before anything runs, in one line with the `pip install` to run.

The packages are made absent for real in the CLI's process: a ``sitecustomize`` sets
``sys.modules[name] = None``, which Python's import system treats as "no such module" (``import``
raises ModuleNotFoundError, ``importlib.util.find_spec`` returns None, Hydra's plugin scan skips
it), as in a virtualenv without the extra. Checked by hand once in a real core-only virtualenv
(docs/install.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.runner.test_sweeps import TINY

EVERY_EXTRA = [
    "tensorboard",
    "mlflow",
    "wandb",
    "optuna",
    "hydra_plugins.hydra_joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher",
    "opacus",
    "peft",
    "datasets",
]


def cli_without(modules: list[str], *arguments: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python cli.py`` in a process where ``modules`` cannot be imported."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    )
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "cli.py", f"paths.output_root={tmp_path / 'outputs'}", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (["logger=mlflow"], "logger='mlflow': needs the optional extra mlflow"),
        (["logger=all"], "logger='all': needs the optional extras tensorboard, mlflow, wandb"),
        (
            ["paradigm=scratch", "hparams_search=scratch_optuna"],
            "hparams_search='scratch_optuna': needs the optional extra hpo",
        ),
        (
            ["seed=0,1", "hydra/launcher=joblib", "-m"],
            "hydra/launcher='joblib': needs the optional extra parallel",
        ),
        (
            ["seed=0,1", "hydra/launcher=slurm_local", "-m"],
            "hydra/launcher='slurm_local': needs the optional extra slurm",
        ),
        (
            ["paradigm=federated", "paradigm/privacy=dp"],
            "paradigm/privacy='dp': needs the optional extra dp",
        ),
        (["paradigm/method=lora"], "paradigm/method='lora': needs the optional extra lora"),
        (["data=hf", "data.path=x"], "data='hf': needs the optional extra hf"),
    ],
)
def test_a_part_whose_extra_is_missing_stops_in_one_line(
    arguments: list[str], line: str, tmp_path: Path
) -> None:
    process = cli_without(EVERY_EXTRA, *arguments, tmp_path=tmp_path)

    assert process.returncode == 2, process.stderr
    (printed,) = process.stderr.strip().splitlines()  # one line, nothing else
    extras = line.split("extra", 1)[1].removeprefix("s").strip().replace(", ", ",")
    assert printed == f"error: {line} (not installed). Fix: pip install -e '.[{extras}]'"
    assert not (tmp_path / "outputs").exists(), "nothing was written"


def test_a_run_needs_no_extra(tmp_path: Path) -> None:
    process = cli_without(EVERY_EXTRA, *TINY, tmp_path=tmp_path)

    assert process.returncode == 0, process.stderr[-3000:]
    assert list((tmp_path / "outputs" / "scratch").glob("*/*/summary.json"))
