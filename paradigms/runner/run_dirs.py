"""Where a run writes, decided before Hydra creates anything (no torch imports here).

``outputs/<paradigm>/<date>/<time>_<id>/``: the random id keeps two runs started in the same
second apart, and it is resolved once in the parent process, so DDP's re-launched ranks
share the directory. ``resume=<run dir or checkpoint>`` reuses the run's directory and
records the resuming invocation's config beside the original instead of over it.
``resume=auto`` names the directory after the SLURM job (``outputs/<paradigm>/slurm/<job id>``),
which a requeued job keeps, so the requeued run continues its own last checkpoint.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from paradigms.runner.errors import ConfigError

HYDRA_SUBDIR = ".hydra"
AUTO = "auto"


def find_run_dir(resume: str) -> Path | None:
    """The run directory holding ``resume`` (a run dir, or any file or folder inside one)."""
    path = Path(resume).expanduser().resolve()
    for candidate in (path, *path.parents):
        if (candidate / HYDRA_SUBDIR / "config.yaml").is_file():
            return candidate
    return None


@cache
def _started() -> tuple[str, str]:
    """This process's start date and ``<time>_<random id>``, fixed however often resolved."""
    now = datetime.now()
    return f"{now:%Y-%m-%d}", f"{now:%H-%M-%S}_{secrets.token_hex(3)}"


def slurm_job_key() -> str | None:
    """The SLURM job (``<array job>_<task>`` in an array) this process runs in, if any; it
    survives a requeue, unlike the start time."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def resumes_saved_run(resume: str | None) -> bool:
    """Whether ``resume`` names a saved run to continue (``auto`` continues only itself)."""
    return bool(resume) and resume != AUTO


def chosen_checkpoint(resume: str | None) -> Path | None:
    """``resume=<a .ckpt file>``: the checkpoint its stage continues from (else None: each
    stage continues from its own ``last.ckpt``)."""
    path = Path(str(resume)).expanduser()
    return (
        path.resolve()
        if resumes_saved_run(resume) and path.suffix == ".ckpt" and path.is_file()
        else None
    )


def is_new_run(resume: str | None, directory: Path) -> bool:
    """Whether this run starts afresh (``resume=auto`` does until its job left a checkpoint)."""
    if resume == AUTO:
        return not any(directory.rglob("*.ckpt"))
    return not resume or find_run_dir(resume) is None


def run_dir(root: str, paradigm: str, resume: str | None) -> str:
    """A new run directory, the resumed run's own, or the SLURM job's with ``resume=auto``."""
    if resume == AUTO:
        key = slurm_job_key()
        if key:
            return str(Path(root) / paradigm / "slurm" / key)
    elif resume:
        found = find_run_dir(resume)
        if found is not None:
            return str(found)
    day, stamp = _started()
    return str(Path(root) / paradigm / day / stamp)


def output_subdir(resume: str | None) -> str:
    """Hydra's config folder: a fresh run's own, or a dated sibling when resuming."""
    if resumes_saved_run(resume) and find_run_dir(resume) is not None:
        day, stamp = _started()
        return f"{HYDRA_SUBDIR}/resumed_{day}_{stamp}"
    return HYDRA_SUBDIR


def sweep_dir(root: str) -> str:
    """A new sweep directory for a multirun."""
    day, stamp = _started()
    return str(Path(root) / "multirun" / day / stamp)


def register_resolvers() -> None:
    """Makes ``${run_dir:...}``, ``${output_subdir:...}`` and ``${sweep_dir:...}`` usable in YAML.

    Cached: Hydra copies the sweep's resolved values into each job's config, so a job in
    another process (joblib, submitit, a requeued SLURM job) writes into the same sweep dir."""
    for name, function in (
        ("run_dir", run_dir),
        ("output_subdir", output_subdir),
        ("sweep_dir", sweep_dir),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=True)


def resumed_config(cfg: Any, overrides: list[str], groups: set[str]) -> Any:
    """The resumed run's saved config, with this invocation's value overrides applied on top.
    Choosing another config group (``paradigm=...``) cannot continue the same run."""
    found = find_run_dir(cfg.resume)
    if found is None:
        raise ConfigError(
            "resume",
            cfg.resume,
            "not a run directory of this tool (no .hydra/config.yaml above it)",
            "give outputs/<paradigm>/<date>/<time>_<id>, a checkpoint inside it, or auto",
        )
    saved = OmegaConf.load(found / HYDRA_SUBDIR / "config.yaml")
    values = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume":
            continue
        if key in groups:
            raise ConfigError(
                key,
                override.split("=", 1)[-1],
                "resume continues the saved run, whose config groups are fixed",
                "start a new run, or drop this override",
            )
        values.append(override.lstrip("+"))
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist(values))
    merged.resume = cfg.resume
    return merged
