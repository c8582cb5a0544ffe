"""Our Optuna sweeper (hydra_plugins/paradigms_optuna): Hydra's sweep syntax as Optuna
distributions, samplers and pruners by name, and real searches through the CLI whose trials are
read back from the study's SQLite storage (the killed-and-restarted search is in
test_sweeps.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.paradigms_optuna._search import grid, search_space
from paradigms.runner.errors import ConfigError
from paradigms.runner.optuna_parts import make_pruner, make_sampler
from tests.helpers import cli
from tests.runner.test_sweeps import TINY, job_dirs, report

STUDY = "scratch_lr_wd"  # conf/hparams_search/scratch_optuna.yaml


def test_hydra_sweep_syntax_becomes_optuna_distributions() -> None:
    params = {
        "lr": "tag(log, interval(1e-4, 1e-1))",
        "wd": "interval(0.0, 0.1)",
        "depth": "range(1, 5)",
        "mix": "range(0.0, 1.0, 0.25)",
        "smoothing": "choice(0.0, 0.1)",
        "backbone": "choice(resnet10t, lcnet_050)",
    }
    space, fixed = search_space(params, ["wd=0.05", "depth=range(2, 8, 2)"])

    assert space == {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "depth": IntDistribution(2, 6, step=2),  # Hydra's range excludes its stop
        "mix": FloatDistribution(0.0, 0.75, step=0.25),
        "smoothing": CategoricalDistribution([0.0, 0.1]),
        "backbone": CategoricalDistribution(["resnet10t", "lcnet_050"]),
    }
    assert fixed == ["wd=0.05"], "a plain value on the command line fixes a searched key"
    assert grid({"depth": space["depth"], "smoothing": space["smoothing"]}) == {
        "depth": [2, 4, 6],
        "smoothing": [0.0, 0.1],
    }
    with pytest.raises(ConfigError, match="GridSampler needs a finite set of values"):
        grid(space)
    with pytest.raises(ConfigError, match="the Optuna sweeper cannot search this"):
        search_space({"x": "glob(*)", "y": "shuffle(range(1, 4))"}, [])


def test_samplers_and_pruners_by_name() -> None:
    assert isinstance(make_sampler(None), optuna.samplers.TPESampler)
    assert isinstance(make_sampler({"name": "random", "seed": 0}), optuna.samplers.RandomSampler)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    pruner = make_pruner({"name": "MedianPruner", "n_warmup_steps": 3})
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.name='tpee'.*TPESampler"):
        make_sampler({"name": "tpee"})
    with pytest.raises(ConfigError, match=r"hydra.sweeper.pruner=.*no_such_argument"):
        make_pruner({"name": "median", "no_such_argument": 1})


def _search(out: Path, *overrides: str) -> None:
    cli(*TINY, "hparams_search=scratch_optuna", *overrides, output_root=out)


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{out / 'optuna' / STUDY / 'optuna.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials()


def test_a_failed_trial_is_recorded_and_a_restart_tries_again(out: Path) -> None:
    failing = ("hydra.sweeper.n_trials=1", "paradigm.optimizer.lr=choice(-1.0, -2.0)")
    _search(out, *failing)
    assert [t.state.name for t in _trials(out)] == ["FAIL"]
    (row,) = report(out / "optuna" / STUDY)
    assert row["status"] == "failed" and "a learning rate must be > 0" in row["error"]

    _search(out, *failing)  # failed trials do not count: the study still lacks its one trial
    assert [t.state.name for t in _trials(out)] == ["FAIL", "FAIL"]
    assert job_dirs(out / "optuna" / STUDY) == ["0", "1"]

    turned = cli(
        *TINY,
        "hparams_search=scratch_optuna",
        "hydra.sweeper.direction=minimize",
        output_root=out,
        check=False,
    )  # Optuna itself would keep the stored direction
    assert turned.returncode == 2
    assert turned.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.direction='minimize': the stored study scratch_lr_wd is to "
        "maximize. Fix: keep its direction, or give a new hydra.sweeper.study_name"
    )


def test_a_sampler_and_a_pruner_chosen_by_name(out: Path) -> None:
    _search(
        out,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.name=RandomSampler",
        "hydra.sweeper.pruner={name: ThresholdPruner, lower: 2.0}",  # val/acc < 2: pruned
    )

    trials = _trials(out)
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(list(t.intermediate_values) == [0] for t in trials), "val/acc of epoch 0"
    assert [r["status"] for r in report(out / "optuna" / STUDY)] == ["pruned", "pruned"]
    # The same sampler, seeded as the search was (seed=0), proposes the same points.
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    expected = [reference.ask(trials[0].distributions).params for _ in trials]
    assert [t.params for t in trials] == expected
