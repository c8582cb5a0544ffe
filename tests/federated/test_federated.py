"""The federated paradigm end to end through the CLI: outputs, the loggers read back through
their own APIs, resume after a kill (1 and 2 processes), and the same global model from 1 and
2 Fabric processes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
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
    "threads=1",  # 1 and 2 processes then compute alike: bit-identical, on any machine
    # Channels-last weights: the flat vectors in their memory order (a CPU's default for
    # models with depthwise convolutions), through kill, resume and two processes.
    "callbacks.accelerate.channels_last=true",
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


def _val_acc(rows: list[dict[str, str]]) -> list[float]:
    return [float(r["val/acc"]) for r in rows]


def test_a_run_writes_rounds_plots_and_summary(full: tuple[Path, str]) -> None:
    run_dir, stdout = full
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    for key in ("val/acc", "val/loss", "train/client_loss", "clients/sampled", "bytes/down",
                "bytes/up", "time/round_s", "time/eval_s", "fed/mean_acc", "fed/worst_acc"):  # fmt: skip
        assert rows[-1][key] != "", key
    assert "test/acc" not in rows[0], "the test set is not evaluated every round"
    # SCAFFOLD sends the model and a control variate down to every sampled client, and both
    # back (with the row's 4 float32 scalars) from every client that returned: bytes are
    # counted from the tensors' sizes.
    per_client = int(float(rows[0]["bytes/down"])) // int(float(rows[0]["clients/sampled"]))
    assert per_client > 2 * 4 * 373_658
    up = [int(float(r["bytes/up"])) for r in rows]
    assert up == [(per_client + 16) * int(float(r["clients/returned"])) for r in rows]
    assert (run_dir / "accuracy.png").stat().st_size > 0
    assert (run_dir / "label_distribution.png").stat().st_size > 0
    assert "IID partition over 6 clients" in stdout
    metrics = summary(run_dir)["metrics"]
    accuracies = _val_acc(rows)
    best = accuracies.index(max(accuracies))
    assert metrics["val/acc"] == accuracies[best], "the best round on validation is reported"
    assert f"selected on validation accuracy: round {best + 1} of 4" in " ".join(stdout.split())
    assert "1 process(es)" in stdout


def test_stop_at_ends_the_run_at_the_round_that_reaches_the_target(
    full: tuple[Path, str], tmp_path: Path
) -> None:
    full_rows = _rows(full[0])
    target = next(r["val/acc"] for r in full_rows[:3] if float(r["val/acc"]) > 0)
    first = next(i + 1 for i, r in enumerate(full_rows) if float(r["val/acc"]) >= float(target))
    process = cli(*RUN, f"paradigm.stop_at={target}", output_root=tmp_path)
    rows = _rows(run_dirs(tmp_path, "federated")[0])
    assert len(rows) == first < 4, "no round runs after the one that reached the target"
    assert [r["val/acc"] for r in rows] == [r["val/acc"] for r in full_rows[:first]]
    assert f"{first} of 4 rounds (stopped: val acc reached" in " ".join(process.stdout.split())


def _kill_after_round(output_root: Path, rounds_done: int, *extra: str) -> Path:
    def ready() -> bool:
        dirs = run_dirs(output_root, "federated")
        checkpoint = dirs[0] / "checkpoints" / "last_round.pt" if dirs else None
        return bool(checkpoint and checkpoint.is_file() and len(_rows(dirs[0])) >= rounds_done)

    interrupted([f"paths.output_root={output_root}", *RUN, *extra], ready, whole_group=True)
    run_dir = run_dirs(output_root, "federated")[0]
    assert not (run_dir / "summary.json").exists(), "killed too late"
    return run_dir


def _assert_resumed_like(full: Path, killed: Path, resumed_stdout: str) -> None:
    assert _same_model(full, killed)
    assert summary(killed)["metrics"] == summary(full)["metrics"]
    drop = ("time/round_s", "time/eval_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(_rows(killed)) == strip(_rows(full)), "every round once, with the same numbers"
    done = torch.load(killed / "checkpoints" / "last_round.pt", weights_only=True)["history"]
    assert [m["round"] for m in done] == [1, 2, 3, 4]
    assert "round   1 " not in resumed_stdout, "a finished round was run again"


def test_killed_run_resumes_bit_identical_and_from_its_checkpoint(
    tmp_path: Path, full: tuple[Path, str]
) -> None:
    killed = _kill_after_round(tmp_path / "killed", 2, "logger=csv_mlflow")
    tampered = tmp_path / "tampered" / "federated" / "run" / killed.name
    shutil.copytree(killed, tampered)
    (tampered / "trackers.json").unlink()  # its own MLflow run, not the killed run's
    checkpoint = tampered / "checkpoints" / "last_round.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["params"] += 0.01
    torch.save(state, checkpoint)

    # Its flat vectors are channels-last: read in standard order they would be scrambled.
    saved = (killed / "checkpoints" / "last_round.pt").read_bytes()
    other = "callbacks.accelerate.channels_last=false"
    refused = cli(f"resume={killed}", other, check=False, output_root=tmp_path / "killed")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: callbacks.accelerate.channels_last=False: the checkpoint's weights are "
        "channels-last and this run would lay them out in standard order. Fix: resume with "
        "callbacks.accelerate.channels_last=true"
    ]
    assert (killed / "checkpoints" / "last_round.pt").read_bytes() == saved, "left as it was"

    resumed = cli(f"resume={killed}", output_root=tmp_path / "killed")
    _assert_resumed_like(full[0], killed, resumed.stdout)
    # The MLflow run of the killed run is continued, and holds the rounds of metrics.csv.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'killed'}/mlflow.db")
    run_id = json.loads((killed / "trackers.json").read_text())["mlflow"]["run_id"]
    history = {m.step: m.value for m in client.get_metric_history(run_id, "val/acc")}
    assert [history[step] for step in (1, 2, 3, 4)] == pytest.approx(_val_acc(_rows(killed)))

    cli(f"resume={tampered}", output_root=tmp_path / "tampered")
    assert summary(tampered)["metrics"] != summary(killed)["metrics"], "the checkpoint is read"


def test_two_processes_give_the_same_global_model_and_log_to_tensorboard(
    tmp_path: Path, full: tuple[Path, str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    process = cli(*RUN, "trainer=ddp_cpu", "logger=csv_tensorboard", output_root=tmp_path)
    two = run_dirs(tmp_path, "federated")[0]
    assert "2 process(es)" in process.stdout
    assert _same_model(full[0], two), "rows are summed with zeros: exact"
    assert summary(two)["metrics"] == summary(full[0])["metrics"]
    events = EventAccumulator(str(two / "tensorboard")).Reload()
    logged = events.Scalars("val/acc")
    assert [e.step for e in logged] == [1, 2, 3, 4]
    assert [e.value for e in logged] == pytest.approx(_val_acc(_rows(two)))


def test_two_forked_processes_give_the_same_global_model(
    tmp_path: Path, full: tuple[Path, str]
) -> None:
    # ddp_fork: the ranks are forked from the launching process, which has imported everything
    # (bench_federated_speed: the second process's start-up is not paid again).
    process = cli(*RUN, "trainer=ddp_cpu", "trainer.strategy=ddp_fork", output_root=tmp_path)
    assert "2 process(es)" in process.stdout
    assert _same_model(full[0], run_dirs(tmp_path, "federated")[0])


def test_two_killed_processes_resume_bit_identical(tmp_path: Path, full: tuple[Path, str]) -> None:
    killed = _kill_after_round(tmp_path, 2, "trainer=ddp_cpu")
    resumed = cli(f"resume={killed}", output_root=tmp_path)
    _assert_resumed_like(full[0], killed, resumed.stdout)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "paradigm/strategy=krum",
            "error: paradigm.strategy.byzantine=1: Krum needs more than 2f + 2 clients a round, "
            "got 3. Fix: sample more clients (paradigm.fraction) or lower byzantine",
        ),
        (
            "callbacks.accelerate.compile=true",
            "error: callbacks.accelerate.compile=True: the federated rounds are not compiled "
            "(every client's weights are swapped into one model, and the vmap engine calls it "
            "functionally). Fix: callbacks.accelerate.compile=false",
        ),
    ],
    ids=["krum", "compile"],
)
def test_bad_values_stop_before_training_with_one_line(out: Path, override: str, line: str) -> None:
    process = cli(*RUN, override, check=False, output_root=out)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [line]
    assert not run_dirs(out, "federated"), "a run that fails validation leaves nothing behind"
