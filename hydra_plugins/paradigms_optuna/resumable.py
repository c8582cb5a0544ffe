"""The Optuna sweeper, resumable: a study stored in SQLite continues where it stopped.

With the plain sweeper every invocation runs ``n_trials`` more trials and numbers its jobs
from 0 again, over the first invocation's job directories. Here ``n_trials`` is how many
completed trials the study should hold: a restarted sweep runs only the missing ones, and
its jobs are numbered after the trials already stored, so job ``<n>`` is Optuna trial ``n``.
Trials left running by a killed sweep are marked failed (one sweep process per study), and
a seeded sampler is reseeded on restart so it does not propose the same points again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(OptunaSweeper):
    """``hydra.sweeper._target_`` of conf/hparams_search/*: Hydra's OptunaSweeper, resumable."""

    def sweep(self, arguments: list[str]) -> Any:
        impl = self.sweeper
        Path(str(impl.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        if impl.storage:
            trials = _claim_stored_trials(impl.study_name, impl.storage)
            completed = sum(t.state.name == "COMPLETE" for t in trials)
            impl.n_trials = max(impl.n_trials - completed, 0)
            impl.job_idx = len(trials)
            if trials and hasattr(impl.sampler, "reseed_rng"):
                # A seeded sampler would propose the first invocation's points again.
                impl.sampler.reseed_rng()
            if trials:
                log.info(
                    f"Study {impl.study_name}: {completed} completed trials stored, "
                    f"running {impl.n_trials} more"
                )
        return super().sweep(arguments)


def _claim_stored_trials(study_name: str, storage: str) -> list[Any]:
    """The study's stored trials (none for a new study); ones still RUNNING are marked FAIL."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
    return trials
