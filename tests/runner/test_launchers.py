"""Jobs in other processes: a submitit job (the SLURM launcher's path, run locally), parallel
workers forked from one server (hydra/launcher=parallel), and DDP inside a multirun, which must
make one job directory, not re-launch the sweep."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.helpers import cli
from tests.runner.test_sweeps import TINY, job_dirs, report, sweep_dirs


def test_a_submitit_job_writes_its_run_directory(out: Path) -> None:
    cli(*TINY, "hydra/launcher=slurm_local", "seed=3", "-m", output_root=out)

    (sweep,) = sweep_dirs(out)
    assert job_dirs(sweep) == ["0"]
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["run_dir"] == str(sweep / "0")
    assert summary["threads"]["cpus_per_task"] == summary["threads"]["torch"] == 1, (
        "the job keeps to the one core slurm_local.yaml gives it"
    )
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit ran it as its own job"
    assert [r["status"] for r in report(sweep)] == ["completed"]


def test_ddp_in_a_multirun_makes_one_directory(out: Path) -> None:
    # Two epochs whose best checkpoint is the first: the exported model must be that one.
    process = cli(*TINY, "trainer=ddp_cpu", "trainer.max_epochs=2", "seed=0", "-m", output_root=out)

    assert "runs as ddp_spawn" in process.stderr
    assert [p.name for p in out.iterdir()] == ["multirun"]
    (sweep,) = sweep_dirs(out)
    assert job_dirs(sweep) == ["0"]
    threads = json.loads((sweep / "0" / "summary.json").read_text())["threads"]
    assert threads["local_processes"] == 2, "the two ranks share the job's cores"
    (best,) = (sweep / "0" / "checkpoints").glob("best-*.ckpt")
    assert best.name == "best-000.ckpt"
    tested = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    exported = load_file(sweep / "0" / "model.safetensors")
    assert all(torch.equal(v, tested[f"model.{k}"]) for k, v in exported.items()), (
        "the exported model is the tested (best) one, not the spawned ranks' last weights"
    )


def test_a_parallel_sweep_hands_a_failed_jobs_error_back(out: Path) -> None:
    """The workers' results travel back by pickle: a job's ConfigError too (fail_fast)."""
    process = cli(
        *TINY,
        "hydra/launcher=parallel",
        "sweep.fail_fast=true",
        "paradigm.optimizer.lr=-1,1e-3",
        "-m",
        output_root=out,
        check=False,
    )
    assert process.returncode == 1
    assert (
        process.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "paradigm.optimizer.lr=-1: a learning rate must be > 0. Fix: paradigm.optimizer.lr=1e-3"
        )
    )
    (sweep,) = sweep_dirs(out)
    assert (sweep / "1" / "summary.json").is_file(), "the job beside it ran to its end"
