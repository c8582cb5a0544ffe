"""Runs a sweep's jobs in parallel local processes forked from one that imported the stack once.

Hydra's joblib launcher starts its workers with loky, which spawns fresh interpreters, so each
worker imports torch, Lightning and timm again (about 6 s on a 2-core machine): for short jobs
that costs more than running them side by side saves. Here the workers are forked from a
multiprocessing *forkserver* that imported those modules (``preload``) and did nothing else:
forking a process whose OpenMP thread pool has run can hang the child, forking one that only
imported is safe. At most ``n_jobs`` workers run at once; each runs its jobs one after another,
as the basic launcher does in its one process, and each job sets its own share of the cores
(``threads=auto``, paradigms/runner/threads.py).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import multiprocessing
import pickle
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.basecontainer import BaseContainer

from paradigms.runner.threads import concurrent_jobs, usable_cpus

log = logging.getLogger(__name__)


class ForkserverLauncher(Launcher):
    """Hydra launcher: ``n_jobs`` local worker processes forked from a server that imported
    ``preload``."""

    def __init__(self, n_jobs: int = 2, preload: Sequence[str] = ()) -> None:
        self.n_jobs = n_jobs
        self.preload = list(preload)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    @staticmethod
    def warm_up(preload: Sequence[str] = (), **_: Any) -> None:
        """Starts the server now, so it imports ``preload`` while the sweep is being checked."""
        multiprocessing.set_forkserver_preload(list(preload))
        forkserver.ensure_running()

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        workers = min(concurrent_jobs({"n_jobs": self.n_jobs}, usable_cpus()), len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs, {workers} at a time, in {sweep_dir}")
        for index, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
        self.warm_up(self.preload)
        # The task function travels by name: cli.py's is wrapped by @hydra.main.
        task = (self.task_function.__module__, self.task_function.__qualname__)
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(
                    _run,
                    index,
                    list(overrides),
                    self.hydra_context,
                    self.config,
                    task,
                    _portable_state(),
                )
                for index, overrides in enumerate(job_overrides, initial_job_idx)
            ]
            try:
                return [future.result() for future in futures]
            except KeyboardInterrupt:  # each running job printed how to resume it
                pool.shutdown(wait=False, cancel_futures=True)
                sys.exit(130)


def _portable_state() -> dict[str, Any]:
    """Hydra's global state, less OmegaConf's resolvers: they are closures, which do not pickle,
    and a worker registers its own when it imports cli.py (as every job's process does)."""
    state = Singleton.get_state()
    del state["omegaconf_resolvers"]
    return state


def _run(
    index: int,
    overrides: list[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task: tuple[str, str],
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """One job in a worker, as Hydra's launchers run it."""
    setup_globals()
    Singleton.set_state({**singleton_state, "omegaconf_resolvers": BaseContainer._resolvers})
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{index}"
        sweep_config.hydra.job.num = index
    HydraConfig.instance().set_config(sweep_config)
    module, name = task
    task_function = inspect.unwrap(getattr(importlib.import_module(module), name))
    result = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    return _portable_result(result)


def _portable_result(result: JobReturn) -> JobReturn:
    """The job's return as the parent can unpickle it: its Hydra config as plain values (its
    structured-config classes are not the parent's), an error it cannot rebuild as its text."""
    if result.hydra_cfg is not None:
        result.hydra_cfg = OmegaConf.create(OmegaConf.to_container(result.hydra_cfg))
    try:
        pickle.loads(pickle.dumps(result._return_value))
    except Exception:  # e.g. an exception whose constructor takes other arguments
        result._return_value = RuntimeError(str(result._return_value))
    return result
