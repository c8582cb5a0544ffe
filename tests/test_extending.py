"""One way to extend: a fine-tuning method, a federated strategy, a partitioner and a
multi-task weighting, each added as one class (here) and one YAML (in a temporary config
folder on Hydra's search path), touching nothing else, then run for real. A setting of a new
component is checked by its schema beside it (tests/schema.py) before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from paradigms.federated.partition import Partitioner
from paradigms.federated.strategies import Strategy
from paradigms.finetune.methods import Method, PreparedModel, freeze
from paradigms.models.backbone import classifier_keys
from paradigms.multitask.weighting import Weighting
from tests.helpers import FAST, cli, run_dirs, summary


class BitFit(Method):
    """BitFit (Ben Zaken et al. 2022): only the biases and the head learn."""

    def prepare(self, model: nn.Module, bn_mode: str) -> PreparedModel:
        biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
        return PreparedModel(model, model, freeze(model, biases | classifier_keys(model), bn_mode))


class Unweighted(Strategy):
    """FedAvg without sample weights: every returned client's update counts the same."""

    def combine(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return deltas.mean(0)


class RoundRobin(Partitioner):
    """Sample i goes to client i mod K."""

    def assign(self, labels, num_clients, generator):
        return [torch.arange(c, len(labels), num_clients) for c in range(num_clients)]


class InverseLoss(Weighting):
    """A task weighs the inverse of its last epoch's mean loss (the weights sum to T); equal
    weights in the first epoch. Cost: none."""

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        if len(history) == 0:
            return torch.ones_like(self.static)
        inverse = 1 / history[-1].clamp_min(1e-12)
        return len(inverse) * inverse / inverse.sum()


YAMLS = {
    "method/bit_fit.yaml": "_target_: tests.test_extending.BitFit\nlr: 1.0e-2  # peak lr\n",
    "strategy/unweighted.yaml": "_target_: tests.test_extending.Unweighted\nserver_lr: 1.0  # step\n",
    "partition/round_robin.yaml": "_target_: tests.test_extending.RoundRobin\n",
    "weighting/inverse_loss.yaml": (
        "_target_: tests.test_extending.InverseLoss\n_partial_: true  # built per model\n"
    ),
}
FEDERATED = [
    "paradigm=federated",
    "backbone=test_resnet",
    "paradigm/strategy=unweighted",
    "paradigm/partition=round_robin",
    "paradigm.num_clients=4",
    "paradigm.rounds=2",
    "paradigm.progress=false",
]


@pytest.fixture(scope="module")
def search_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A config folder holding the four new YAMLs, as a ``hydra.searchpath`` override."""
    conf = tmp_path_factory.mktemp("conf")
    for name, text in YAMLS.items():
        path = conf / "paradigm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return f"hydra.searchpath=[file://{conf}]"


def _row(out: Path, paradigm: str) -> dict:
    (run_dir,) = run_dirs(out, paradigm)
    return summary(run_dir)["rows"][0 if paradigm == "federated" else -1]


def test_a_new_fine_tuning_method_runs(search_path: str, out: Path) -> None:
    overrides = ["paradigm/method=bit_fit", "compare=none", "source.max_epochs=1"]
    cli(search_path, *FAST, *overrides, "trainer.max_epochs=1", output_root=out)
    row = _row(out, "finetune")
    assert row["name"] == "finetune (bit_fit)"
    assert 0 < row["trainable_params"] < row["total_params"] / 10, row


def test_a_new_strategy_and_partitioner_run(search_path: str, out: Path) -> None:
    cli(search_path, *FEDERATED, output_root=out)
    row = _row(out, "federated")
    assert row["name"] == "federated Unweighted (RoundRobin)"
    assert row["metrics"]["test/acc"] > 0


def test_a_new_weighting_runs(search_path: str, out: Path) -> None:
    overrides = ["paradigm=multitask", "paradigm/weighting=inverse_loss", "compare=none"]
    cli(search_path, *FAST, *overrides, output_root=out)
    (run_dir,) = run_dirs(out, "multitask")
    assert summary(run_dir)["rows"][0]["name"] == "multitask (inverseloss)"


def test_a_new_components_schema_beside_it_checks_its_settings(search_path: str, out: Path):
    process = cli(
        search_path, *FEDERATED, "paradigm.strategy.server_lr=0", output_root=out, check=False
    )
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, process.stderr[-2000:]
    assert lines[0].startswith("error: paradigm.strategy.server_lr=0: must be > 0"), lines[0]
