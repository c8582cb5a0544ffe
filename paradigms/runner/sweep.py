"""What a multirun adds to a run: a check before the first job, a record per job, a report
at the end, and DDP that works inside a sweep.

``SweepCallback`` is a Hydra callback (``hydra.callbacks`` in conf/config.yaml). Hydra calls
``on_job_*`` in the process that runs the job (a joblib worker, a SLURM node) and
``on_multirun_*`` in the process that started the sweep, so jobs talk to the report through
files: each job leaves ``job.json`` (status, overrides, wall time, error) in its directory.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, read_write

from paradigms.runner.errors import ConfigError, reported
from paradigms.runner.extras import check_extras
from paradigms.runner.preflight import preflight
from paradigms.runner.run_dirs import register_resolvers
from paradigms.runner.slurm import check_request
from paradigms.runner.slurm import register_resolvers as register_slurm_resolvers
from paradigms.runner.sweep_report import JOB_FILE, write_report
from paradigms.runner.validation import validate

# A job in another process (joblib, submitit) resolves the run-dir interpolations there, and
# Hydra imports this module there before the job starts.
register_resolvers()
register_slurm_resolvers()

# Values that change what a job reports; with one of these (or a config group) swept, each
# job makes its own pre-flight checks instead of the sweep checking the base config.
_REPORT_KEYS = {"compare", "optimized_metric"}


def swept_keys(config: DictConfig) -> set[str]:
    """Keys the sweep varies: sweep overrides on the command line and the sweeper's params."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return {o.key_or_group for o in parsed if o.is_sweep_override()} | set(params)


def check_before_sweep(config: DictConfig) -> None:
    """Makes the pre-flight checks on the base config before the first job starts, so a typo
    costs one line instead of a sweep of failed jobs; exits 2 on a ConfigError. Where the
    sweep varies a config group, ``compare`` or ``optimized_metric``, only the values are
    validated here: each job checks what its own choices build."""
    with reported(Path(config.hydra.sweep.dir), fresh=False, debug=config.debug):
        groups = set(OmegaConf.select(config, "hydra.runtime.choices") or {})
        if swept_keys(config) & (_REPORT_KEYS | groups):
            validate(config)
        else:
            preflight(config)
        check_request(config)


def test_metric_warning(name: str) -> str | None:
    """The one line a sweep prints when it optimizes a test metric (``test/acc``,
    ``scratch/test/acc``, ``test/delta_m_pct``), or None for any other metric."""
    if "test" not in str(name).split("/"):
        return None
    return (
        f"warning: optimized_metric={name} selects the sweep's best job on the test set, so "
        "that job's test score is optimistically biased (it was tuned on the data it is "
        "reported on); optimize a validation metric (e.g. val/acc) and report test beside it"
    )


def warm_up_launcher(config: DictConfig) -> None:
    """Lets a launcher that prepares its workers (``hydra/launcher=parallel`` imports torch in
    its fork server) start now, while the sweep is checked, instead of after the check."""
    target = OmegaConf.select(config, "hydra.launcher._target_")
    warm_up = getattr(get_class(target), "warm_up", None) if target else None
    if warm_up is not None:
        warm_up(**OmegaConf.to_container(config.hydra.launcher, resolve=True))


def multirun_strategy(trainer: dict[str, Any], multirun: bool) -> dict[str, Any]:
    """The Trainer config with ``ddp`` replaced by ``ddp_spawn`` inside a multirun.

    ``ddp`` re-executes the command line for each extra rank, which inside ``-m`` re-launches
    the whole sweep (lightning-hydra-template #393); ``ddp_spawn`` forks the ranks from the
    job itself. Under SLURM the ranks are SLURM's tasks and nothing is re-launched."""
    strategy = trainer.get("strategy")
    if not multirun or not isinstance(strategy, str) or not strategy.startswith("ddp"):
        return trainer
    if strategy.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook")):
        return trainer
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        return trainer
    spawned = "ddp_spawn" + strategy[len("ddp") :]
    print(f"note: trainer.strategy={strategy} inside a multirun runs as {spawned}", file=sys.stderr)
    return {**trainer, "strategy": spawned}


def _one_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class SweepCallback(Callback):
    """Checks a sweep before it starts, records each job, and reports the sweep at its end.

    A failed job is recorded (``job.json``, and its traceback in ``error.txt``) and the sweep
    goes on: the job is handed back to the sweeper as a NaN result, which our Optuna sweeper
    stores as a failed trial (a trial its pruner stopped stays an error, recorded as pruned).
    ``sweep.fail_fast=true`` leaves the failure to Hydra, which stops the sweep with the job's
    error (with the default launcher, right after that job).
    """

    def __init__(self) -> None:
        self._started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with reported(Path(config.hydra.sweep.dir), fresh=False, debug=config.debug):
            check_extras(config)  # a launcher whose extra is missing cannot even warm up
        warm_up_launcher(config)
        check_before_sweep(config)
        warning = test_metric_warning(config.optimized_metric)
        if warning:
            print(warning, file=sys.stderr)
        sweeper = OmegaConf.select(config, "hydra.sweeper._target_") or ""
        launcher = OmegaConf.select(config, "hydra.launcher._target_") or ""
        basic = sweeper.endswith("BasicSweeper") and launcher.endswith("BasicLauncher")
        if config.sweep.fail_fast and basic:
            # The basic sweeper raises a failure only after its batch (all jobs by default).
            with read_write(config.hydra.sweeper):
                config.hydra.sweeper.max_batch_size = 1

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        error = job_return._return_value if failed else None
        # An Optuna pruner stopped the trial (paradigms/runner/pruning.py): the sweeper records it.
        pruned = type(error).__name__ == "TrialPruned"
        record = {
            "num": config.hydra.job.num,
            "overrides": list(job_return.overrides or []),
            "status": "pruned" if pruned else "failed" if failed else "completed",
            "error": _one_line(error) if failed else None,
            "wall_time_s": round(time.perf_counter() - self._started, 2),
        }
        (job_dir / JOB_FILE).write_text(json.dumps(record, indent=2))
        if not failed or pruned or config.sweep.fail_fast:
            return
        if not isinstance(error, ConfigError):
            trace = "".join(traceback.format_exception(error))
            (job_dir / "error.txt").write_text(trace)
            print(trace, file=sys.stderr)
        print(
            f"job {record['num']} failed; the sweep goes on (sweep.fail_fast=false)",
            file=sys.stderr,
        )
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = float("nan")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_report(Path(config.hydra.sweep.dir), config.optimized_metric)
