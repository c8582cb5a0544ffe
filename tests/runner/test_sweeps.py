"""Multiruns through the real CLI: one sweep directory, one directory per job, failed jobs
recorded without stopping the sweep (unless asked), the report, and a resumable Optuna study
(our sweeper, hydra_plugins/paradigms_optuna; more in test_optuna_sweeper.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna

from tests.helpers import cli, interrupted

# Hydra's -m goes last: argparse takes no overrides after it once some came before.
# A real training of a few steps: enough to write checkpoints, metrics and a summary.
TINY = [
    "paradigm=scratch",
    "backbone=test_resnet",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
]


def sweep_dirs(output_root: Path) -> list[Path]:
    return sorted((output_root / "multirun").glob("*/*"))


def job_dirs(sweep_dir: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in sweep_dir.glob("*/.hydra/config.yaml"))


def report(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep_dir / "report.csv").open()))


def test_multirun_over_a_group_and_a_value_with_a_failing_job(out: Path) -> None:
    cli(*TINY, "logger=csv,none", "paradigm.optimizer.lr=1e-3,-1", "-m", output_root=out)

    assert [p.name for p in out.iterdir()] == ["multirun"], "every job writes under the sweep"
    (sweep,) = sweep_dirs(out)
    assert job_dirs(sweep) == ["0", "1", "2", "3"]
    rows = report(sweep)
    assert [(r["logger"], r["paradigm.optimizer.lr"], r["status"]) for r in rows] == [
        ("csv", "0.001", "completed"),
        ("csv", "-1", "failed"),
        ("none", "0.001", "completed"),
        ("none", "-1", "failed"),
    ]
    assert "a learning rate must be > 0" in rows[1]["error"]
    assert 0.0 <= float(rows[0]["test/acc"]) <= 1.0 and rows[1]["test/acc"] == "-"
    assert (sweep / "0" / "summary.json").is_file() and (sweep / "0" / "metrics.csv").is_file()
    assert not (sweep / "2" / "metrics.csv").exists(), "logger=none writes no metrics.csv"
    assert (sweep / "report.png").stat().st_size > 0
    assert "| failed |" in (sweep / "report.md").read_text()


def test_fail_fast_stops_the_sweep_at_the_first_failed_job(out: Path) -> None:
    process = cli(
        *TINY,
        "sweep.fail_fast=true",
        "paradigm.optimizer.lr=-1,1e-3",
        "-m",
        output_root=out,
        check=False,
    )
    assert process.returncode != 0
    (sweep,) = sweep_dirs(out)
    assert job_dirs(sweep) == ["0"], "the job after the failed one never starts"


def test_a_wrong_metric_stops_the_sweep_before_the_first_job(out: Path) -> None:
    process = cli(
        *TINY, "optimized_metric=scratch/test/acc", "seed=0,1", "-m", output_root=out, check=False
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("error: optimized_metric=")
    assert not out.exists()


OPTUNA = [*TINY, "hparams_search=scratch_optuna", "hydra.sweeper.n_trials=3"]


def test_an_interrupted_optuna_sweep_runs_only_the_missing_trials(out: Path) -> None:
    study_dir = out / "optuna" / "scratch_lr_wd"

    def third_trial_started() -> bool:
        return (study_dir / "2" / ".hydra").is_dir()

    interrupted([f"paths.output_root={out}", *OPTUNA], third_trial_started, timeout=900)
    assert third_trial_started(), "killed before the third trial started"
    assert not (study_dir / "2" / "summary.json").exists(), "killed too late"

    cli(*OPTUNA, output_root=out)

    assert job_dirs(study_dir) == ["0", "1", "2", "3"], "the restart ran exactly one trial"
    trials = optuna.load_study(
        study_name="scratch_lr_wd", storage=f"sqlite:///{study_dir}/optuna.db"
    ).get_trials()
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[3].params == trials[2].params, "the killed trial's point is tried again"
    assert trials[3].user_attrs == {"retry_of": 2}
    assert [r["status"] for r in report(study_dir)] == [
        "completed",
        "completed",
        "interrupted",
        "completed",
    ]
