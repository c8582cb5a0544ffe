"""Run directories: unique when started in the same second, and stable across a SLURM
requeue with ``resume=auto``; every experiment, search and launcher config composes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from paradigms.runner.run_dirs import register_resolvers, run_dir
from paradigms.runner.slurm import register_resolvers as register_slurm_resolvers
from tests.helpers import ROOT, cli, run_dirs
from tests.runner.test_sweeps import TINY

# What ${run_dir:...} in conf/config.yaml gives a fresh run, printed by a new process.
NEW_RUN_DIR = (
    "from paradigms.runner.run_dirs import run_dir; print(run_dir('outputs', 'scratch', None))"
)


def test_runs_started_in_the_same_second_get_different_directories() -> None:
    for _ in range(10):
        starts = [
            subprocess.Popen(
                [sys.executable, "-c", NEW_RUN_DIR], cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        first, second = (p.communicate()[0].strip() for p in starts)
        if first.split("_")[0] == second.split("_")[0]:  # the same <date>/<time>
            assert first != second
            return
    pytest.fail("never started two runs within one second")


def test_auto_resume_names_the_directory_after_the_slurm_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert run_dir("outputs", "scratch", "auto") == str(Path("outputs/scratch/slurm/77"))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_dir("outputs", "scratch", "auto") == str(Path("outputs/scratch/slurm/70_3"))


def test_a_requeued_slurm_job_continues_its_last_checkpoint(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cli(*TINY, "resume=auto", output_root=out)
    (job,) = run_dirs(out, "scratch")
    assert job == out / "scratch" / "slurm" / "4242"
    # The job was stopped after its first epoch's checkpoint, before it finished:
    for name in ("summary.json", "results.json"):
        (job / name).unlink()
    cli(*TINY, "resume=auto", "trainer.max_epochs=2", output_root=out)

    assert run_dirs(out, "scratch") == [job]
    epochs = [r["epoch"] for r in csv.DictReader((job / "metrics.csv").open()) if r.get("val/acc")]
    assert epochs == ["0", "1"], "the requeued run trained only the missing epoch"
    assert (job / "summary.json").is_file()


@pytest.mark.parametrize(
    "choice",
    [f"experiment={p.stem}" for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))]
    + [
        f"hparams_search={p.stem}"
        for p in sorted((ROOT / "conf" / "hparams_search").glob("*.yaml"))
    ]
    + [
        f"hydra/launcher={p.stem}"
        for p in sorted((ROOT / "conf" / "hydra" / "launcher").glob("*.yaml"))
    ],
)
def test_every_experiment_search_and_launcher_composes(choice: str) -> None:
    register_resolvers()
    register_slurm_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[choice], return_hydra_config=True)
    assert cfg.paradigm._target_.startswith("paradigms.")
    if choice.startswith("hparams_search"):
        assert cfg.hydra.sweeper.params and cfg.hydra.sweeper.storage.startswith("sqlite:///")
    if choice == "hydra/launcher=slurm":  # the default trainer: one CPU process
        assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.gpus_per_node) == (1, 0)
