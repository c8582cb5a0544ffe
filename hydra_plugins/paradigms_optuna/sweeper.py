"""Our Optuna sweeper (``hydra/sweeper=paradigms_optuna``, its options in
conf/hydra/sweeper/paradigms_optuna.yaml), on Optuna's public ask-and-tell API.

The study lives in ``storage`` (SQLite in the sweep directory, whose name does not change), so
the same command run again continues it: ``n_trials`` is how many finished trials (completed or
pruned) the study should hold, and a restart runs only the missing ones. Job ``n`` of the sweep
is Optuna trial ``n``. Trials a killed sweep left running are marked failed and their points
are tried again first (the kill was not their fault); trials whose job failed stay failed, do
not count, and are not repeated: the sampler proposes new points in their place on the next
restart. One sweeping process per study.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from paradigms.runner.errors import ConfigError, reported

log = logging.getLogger(__name__)

_DIRECTIONS = ("maximize", "minimize")


class OptunaSweeper(Sweeper):
    """Searches ``params`` (Hydra's sweep syntax) with the named ``sampler`` (and ``pruner``,
    which stops trials in their jobs: paradigms.runner.pruning) towards ``direction``."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig | None = None,
        pruner: DictConfig | None = None,
        params: DictConfig | None = None,
    ) -> None:
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler = OmegaConf.to_container(sampler, resolve=True) if sampler else None
        self.pruner = OmegaConf.to_container(pruner, resolve=True) if pruner else None
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        with reported(sweep_dir, fresh=False, debug=bool(self.config.get("debug"))):
            study, space, fixed, missing = self._open(sweep_dir, arguments)
        from hydra_plugins.paradigms_optuna._search import tell

        while missing > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, missing))]
            numbers = [t.number for t in trials]
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                raise RuntimeError(f"another process adds trials to study {self.study_name}")
            batch = [[*(f"{k}={v}" for k, v in t.params.items()), *fixed] for t in trials]
            jobs = self.launcher.launch(batch, initial_job_idx=numbers[0])
            for trial, job in zip(trials, jobs, strict=True):
                tell(study, trial, job)
            missing -= len(trials)
        _write_results(study, sweep_dir)

    def _open(self, sweep_dir: Path, arguments: list[str]) -> tuple[Any, Any, list[str], int]:
        """The study (created, or loaded and its killed trials claimed), the search space, the
        fixed overrides and how many trials to run."""
        import optuna

        from hydra_plugins.paradigms_optuna._search import grid, grid_size, search_space
        from paradigms.runner.optuna_parts import make_pruner, make_sampler

        self._check_values()
        space, fixed = search_space(self.params, arguments)
        sweep_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        stored = _stored_trials(self.study_name, self.storage)
        grid_sampler = str((self.sampler or {}).get("name", "")).lower() in ("grid", "gridsampler")
        extra = {"search_space": grid(space)} if grid_sampler else {}
        sampler, pruner = make_sampler(self.sampler, len(stored), **extra), make_pruner(self.pruner)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            pruner=pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:  # Optuna keeps the stored one
            raise ConfigError(
                "hydra.sweeper.direction",
                self.direction,
                f"the stored study {self.study_name} is to {study.direction.name.lower()}",
                "keep its direction, or give a new hydra.sweeper.study_name",
            )
        _retry_killed(study)
        finished = len(
            study.get_trials(
                deepcopy=False,
                states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
            )
        )
        wanted = min(self.n_trials, grid_size(space)) if grid_sampler else self.n_trials
        missing = max(wanted - finished, 0)
        log.info(f"study {self.study_name}: {finished} finished trials stored, {missing} to run")
        return study, space, fixed, missing

    def _check_values(self) -> None:
        if self.direction not in _DIRECTIONS:
            raise ConfigError(
                "hydra.sweeper.direction",
                self.direction,
                "unknown direction",
                " or ".join(_DIRECTIONS),
            )
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"hydra.sweeper.{key}",
                    value,
                    "must be a whole number >= 1",
                    f"hydra.sweeper.{key}=1",
                )
        if not self.study_name:
            raise ConfigError(
                "hydra.sweeper.study_name",
                self.study_name,
                "must be set",
                "hydra.sweeper.study_name=my_search",
            )


def _stored_trials(study_name: str, storage: str | None) -> list[Any]:
    """The trials a stored study already holds (none for a new study or in-memory storage)."""
    import optuna

    if storage is None or study_name not in optuna.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def _retry_killed(study: Any) -> None:
    """Trials a killed sweep left running: marked FAIL, their points queued to run first."""
    import optuna

    for killed in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(killed.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(killed.params, user_attrs={"retry_of": killed.number})


def _write_results(study: Any, sweep_dir: Path) -> None:
    """``optimization_results.yaml``: the best trial so far, and how many trials of each state."""
    import optuna

    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    results: dict[str, Any] = {
        "study": study.study_name,
        "trials": {s: states.count(s) for s in set(states)},
    }
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        best = study.best_trial
        results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
        log.info(f"best: trial {best.number}, value {best.value}, {best.params}")
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
