"""Each process uses its share of the cores: the rule, the inputs it reads from this machine
(affinity, cgroup quota, SLURM), a real sweep that applies it, and the same result from the
sequential and the parallel launcher at the same thread count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paradigms.runner.threads import (
    cgroup_cpu_limit,
    concurrent_jobs,
    device_count,
    task_cpus,
    threads_per_process,
    usable_cpus,
)
from tests.helpers import cli
from tests.runner.test_sweeps import TINY, sweep_dirs


@pytest.mark.parametrize(("jobs", "threads"), [(1, 8), (2, 4), (4, 2), (16, 1)])
def test_concurrent_jobs_split_the_cores(jobs: int, threads: int) -> None:
    assert threads_per_process(8, concurrent_jobs=jobs) == threads


def test_the_parallel_launchers_n_jobs_counts_like_joblib() -> None:
    assert concurrent_jobs({"n_jobs": 2}, cores=8) == 2
    assert concurrent_jobs({"n_jobs": -1}, cores=8) == 8
    assert concurrent_jobs({"n_jobs": -2}, cores=8) == 7
    assert concurrent_jobs({}, cores=8) == 1  # the basic launcher: one job at a time


def test_slurm_cpus_per_task_is_the_tasks_share_of_a_bigger_node() -> None:
    given = task_cpus({}, {"SLURM_CPUS_PER_TASK": "4"})
    assert given == 4
    assert threads_per_process(64, cpus_per_task=given) == 4
    # A submitit launcher's request stands in when SLURM granted nothing (slurm_local).
    assert task_cpus({"cpus_per_task": 1}, {}) == 1
    assert task_cpus({"cpus_per_task": 1}, {"SLURM_CPUS_PER_TASK": "6"}) == 6


def test_ddp_ranks_and_loader_workers_take_their_share() -> None:
    assert threads_per_process(8, local_processes=2) == 4
    assert threads_per_process(8, local_processes=2, loader_workers=2) == 2
    assert threads_per_process(8, concurrent_jobs=2, local_processes=2, loader_workers=4) == 1
    assert device_count("cpu", 2) == device_count("gpu", [0, 3]) == device_count("gpu", "0,1") == 2
    assert device_count("cpu", "auto") == 1


def test_an_affinity_mask_limits_the_usable_cores() -> None:
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert usable_cpus() == min(len(mask), cgroup_cpu_limit() or len(mask))


def test_a_cgroup_quota_caps_the_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2: 1.5 cores
    assert cgroup_cpu_limit(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 3
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1) is None


def _job(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    (sweep,) = sweep_dirs(out)
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    return summary, load_file(sweep / "0" / "model.safetensors")


def test_a_parallel_job_uses_its_share_and_matches_a_sequential_one(tmp_path: Path) -> None:
    """The parallel launcher's job runs with its share of the cores (auto); the same job in a
    sequential sweep, given that thread count, trains bit for bit the same model."""
    share = threads_per_process(usable_cpus(), concurrent_jobs=2)  # parallel.yaml: n_jobs 2
    cli(*TINY, "seed=0", "hydra/launcher=parallel", "-m", output_root=tmp_path / "parallel")
    cli(*TINY, "seed=0", f"threads={share}", "-m", output_root=tmp_path / "sequential")

    parallel, parallel_model = _job(tmp_path / "parallel")
    sequential, sequential_model = _job(tmp_path / "sequential")
    assert parallel["threads"]["setting"] == "auto"
    assert parallel["threads"]["concurrent_jobs"] == 2
    assert parallel["threads"]["torch"] == sequential["threads"]["torch"] == share
    assert parallel["machine"]["usable_cpus"] == usable_cpus()
    assert parallel["metrics"] == sequential["metrics"]
    assert parallel_model.keys() == sequential_model.keys()
    assert all(torch.equal(parallel_model[k], sequential_model[k]) for k in parallel_model)
