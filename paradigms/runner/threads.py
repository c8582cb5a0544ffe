"""How many threads each process of a run uses: its share of the CPU cores it was given.

torch starts one thread per core of the machine. Two jobs side by side, or a job given 4 cores
of a 64-core SLURM node, then run more busy threads than there are cores, and OpenMP threads
that spin waiting for each other make every job several times slower. A process's share:

- the cores it may run on: its affinity mask, capped by a cgroup CPU quota;
- of those, the cores of its task when a scheduler gave it some (``SLURM_CPUS_PER_TASK``, or
  the submitit launcher's ``cpus_per_task``);
- divided by the jobs a local launcher runs at once (joblib's ``n_jobs``) and by the processes
  the job starts on this node (DDP ranks; none extra when SLURM starts each rank as a task);
- less the data-loader workers of each process, which decode on cores of their own;
- at least 1.

Lightning's and Fabric's DDP launchers set ``cores / processes`` threads themselves unless
``OMP_NUM_THREADS`` is set; it is set here, so they keep this count and the ranks they spawn
inherit it. Nothing here imports torch at module level: the count is decided before torch runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CGROUP = Path("/sys/fs/cgroup")
# Read by OpenMP and MKL when a child process (a spawned DDP rank) starts its thread pools.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_process(
    usable_cpus: int,
    concurrent_jobs: int = 1,
    local_processes: int = 1,
    cpus_per_task: int | None = None,
    loader_workers: int = 0,
) -> int:
    """The torch threads of one process (see the module docstring for the rule).

    Args:
        usable_cpus: cores this process may run on (``usable_cpus()``).
        concurrent_jobs: jobs of a local launcher that run at once on the same cores.
        local_processes: processes of this job on this node that share its cores.
        cpus_per_task: cores a scheduler gave this task; None when none did.
        loader_workers: data-loader worker processes of each training process.
    """
    cores = min(usable_cpus, cpus_per_task) if cpus_per_task else usable_cpus
    share = cores // (max(1, concurrent_jobs) * max(1, local_processes))
    return max(1, share - max(0, loader_workers))


def cgroup_cpu_limit(root: Path = CGROUP) -> int | None:
    """Cores allowed by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded
    up; None without a quota."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        return None if quota == "max" else math.ceil(int(quota) / int(period or 100_000))
    v1 = root / "cpu" / "cpu.cfs_quota_us"
    if v1.is_file():
        quota = int(v1.read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return math.ceil(quota / period) if quota > 0 else None
    return None


def usable_cpus(root: Path = CGROUP) -> int:
    """Cores this process may run on: its affinity mask, capped by the cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cgroup_cpu_limit(root)
    return max(1, min(cores or 1, limit or cores or 1))


def concurrent_jobs(launcher: Mapping[str, Any], cores: int) -> int:
    """Jobs a local launcher runs at once: ``n_jobs`` (joblib's meaning of negative values:
    -1 is one per core, -2 all but one...), else 1."""
    n_jobs = launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def task_cpus(launcher: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> int | None:
    """Cores a scheduler gave this task: SLURM's grant, else the launcher's request."""
    given = env.get("SLURM_CPUS_PER_TASK") or launcher.get("cpus_per_task")
    return int(given) if given else None


def device_count(accelerator: str, devices: Any) -> int:
    """Devices, hence processes, a Trainer with ``accelerator`` and ``devices`` uses per node."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    if text.isdigit() and int(text) > 0:
        return int(text)
    if accelerator == "cpu":
        return 1
    import torch  # all GPUs (-1 or auto): only torch can count them

    return max(1, torch.cuda.device_count())


def local_processes(trainer: Mapping[str, Any]) -> int:
    """Processes of this job on this node that share its cores: one per device, except under
    SLURM, which starts every rank as a task with cores of its own (Lightning's
    ``SLURMEnvironment`` decides, as it does for the Trainer)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        return 1
    return device_count(str(trainer.get("accelerator", "auto")), trainer.get("devices", 1))


def apply_threads(count: int) -> dict[str, int]:
    """Sets this process's torch threads and, through the environment, its children's; returns
    the counts torch then reports (inter-op threads can be set only once per process)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(count)
    import torch

    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # already set, or inter-op work has started
        torch.set_num_interop_threads(count)
    return {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}


def use_cores(
    setting: int | str,
    launcher: Mapping[str, Any],
    trainer: Mapping[str, Any],
    loader_workers: int = 0,
) -> dict[str, Any]:
    """Decides and applies this process's threads; returns what was decided, for summary.json.

    Args:
        setting: ``auto`` or a thread count that overrides the rule.
        launcher: the Hydra launcher's config in a multirun (``n_jobs``, ``cpus_per_task``);
            empty for a single run.
        trainer: the Trainer config (``accelerator``, ``devices``).
        loader_workers: ``data.loader.num_workers`` (0 for in-memory data).
    """
    cores = usable_cpus()
    inputs = {
        "concurrent_jobs": concurrent_jobs(launcher, cores),
        "local_processes": local_processes(trainer),
        "cpus_per_task": task_cpus(launcher),
        "loader_workers": loader_workers,
    }
    count = setting if isinstance(setting, int) else threads_per_process(cores, **inputs)
    return {"setting": setting, **apply_threads(count), **inputs}


def machine() -> dict[str, Any]:
    """The machine a run ran on: its node name, CPU model and the cores this process may use."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = os.environ.get("SLURMD_NODENAME") or platform.node()
    return {"node": node, "cpu": model, "usable_cpus": usable_cpus()}
