"""The federated paradigm end to end through the CLI: outputs, resume after a kill, and the
same global model from 1 and 2 processes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import cli, interrupted, run_dirs, summary

# SCAFFOLD, FedBN, dropouts and stragglers: every piece of state a round carries forward.
RUN = [
    "paradigm=federated",
    "backbone=test_resnet",
    "paradigm.num_clients=6",
    "paradigm.rounds=4",
    "paradigm.progress=false",
    "paradigm/partition=iid",
    "paradigm/strategy=scaffold",
    "paradigm.norm=local",
    "paradigm.client_dropout=0.2",
    "paradigm.straggler=0.5",
    "paradigm.local_holdout=0.2",
]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def _same_model(a: Path, b: Path) -> bool:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted single-process run, shared by the tests below."""
    out = tmp_path_factory.mktemp("full")
    process = cli(*RUN, output_root=out)
    return run_dirs(out, "federated")[0], process.stdout


def test_a_run_writes_rounds_plots_and_summary(full: tuple[Path, str]) -> None:
    run_dir, stdout = full
    rows = _rows(run_dir)
    assert [r["round"] for r in rows] == ["1", "2", "3", "4"]
    for key in ("test/acc", "test/loss", "train/client_loss", "clients/sampled", "bytes/down",
                "bytes/up", "time/round_s", "fed/mean_acc", "fed/worst_acc"):  # fmt: skip
        assert rows[-1][key] != "", key
    # SCAFFOLD sends the model and a control variate down to every sampled client, and both
    # back from every client that returned: bytes are counted from the tensors' sizes.
    per_client = int(rows[0]["bytes/down"]) // int(rows[0]["clients/sampled"])
    assert per_client > 2 * 4 * 373_658
    assert all(int(r["bytes/up"]) == per_client * int(r["clients/returned"]) for r in rows)
    assert (run_dir / "accuracy.png").stat().st_size > 0
    assert (run_dir / "label_distribution.png").stat().st_size > 0
    assert "IID partition over 6 clients" in stdout
    metrics = summary(run_dir)["metrics"]
    assert metrics["test/acc"] == float(rows[-1]["test/acc"])


def _kill_after_round(output_root: Path, rounds_done: int) -> Path:
    def ready() -> bool:
        dirs = run_dirs(output_root, "federated")
        checkpoint = dirs[0] / "checkpoints" / "last_round.pt" if dirs else None
        return bool(checkpoint and checkpoint.is_file() and len(_rows(dirs[0])) >= rounds_done)

    interrupted([f"paths.output_root={output_root}", *RUN], ready)
    run_dir = run_dirs(output_root, "federated")[0]
    assert not (run_dir / "summary.json").exists(), "killed too late"
    return run_dir


def test_killed_run_resumes_bit_identical(tmp_path: Path, full: tuple[Path, str]) -> None:
    full = full[0]

    killed = _kill_after_round(tmp_path / "killed", rounds_done=2)
    cli(f"resume={killed}", output_root=tmp_path / "killed")

    assert _same_model(full, killed)
    assert summary(killed)["metrics"] == summary(full)["metrics"]
    drop = ("time/round_s",)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(_rows(killed)) == strip(_rows(full)), "every round once, with the same numbers"


def test_two_processes_give_the_same_global_model(tmp_path: Path) -> None:
    cli(*RUN, output_root=tmp_path / "one")
    cli(*RUN, "paradigm.processes=2", output_root=tmp_path / "two")
    one, two = (
        run_dirs(tmp_path / "one", "federated")[0],
        run_dirs(tmp_path / "two", "federated")[0],
    )
    assert _same_model(one, two)
    assert summary(one)["metrics"] == summary(two)["metrics"]


def test_bad_values_stop_before_training_with_one_line(out: Path) -> None:
    process = cli(*RUN, "paradigm/strategy=krum", check=False, output_root=out)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: paradigm.strategy.byzantine=1: Krum needs more than 2f + 2 clients a round, "
        "got 3. Fix: sample more clients (paradigm.fraction) or lower byzantine"
    ]
    assert not run_dirs(out, "federated"), "a run that fails validation leaves nothing behind"
