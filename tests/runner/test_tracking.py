"""Each tracker, read back through its own API, holds the metric summary.json reports; a
resumed run continues the same tracker run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FAST, cli, linear_stage, run_dirs, summary
from tests.runner.test_resume import _kill_after_checkpoint

SCRATCH = [*FAST, "paradigm=scratch"]


def _mlflow_client(output_root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{output_root}/mlflow.db")


def test_mlflow_and_tensorboard_hold_the_summary_metrics(out: Path) -> None:
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli(*SCRATCH, "logger=[csv,tensorboard,mlflow]", output_root=out)
    run_dir = run_dirs(out, "scratch")[0]
    expected = summary(run_dir)["metrics"]["test/acc"]
    stored = json.loads((run_dir / "trackers.json").read_text())["mlflow"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["scratch"])
    assert list(runs["run_id"]) == [stored["run_id"]]
    assert runs.loc[0, "metrics.test/acc"] == pytest.approx(expected)
    assert runs.loc[0, "metrics.summary/test/acc"] == pytest.approx(expected)
    assert runs.loc[0, "params.paradigm.optimizer.lr"] == "0.003", "the flattened config"
    assert runs.loc[0, "status"] == "FINISHED"
    client = _mlflow_client(out)
    artifacts = {a.path for a in client.list_artifacts(stored["run_id"])}
    assert {"summary.json", "learning_curves.png", "last"} <= artifacts, artifacts

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert events.Scalars("test/acc")[-1].value == pytest.approx(expected)
    assert len(events.Scalars("val/acc")) == 2, "one value per epoch"
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_tensorboard_writes_one_event_file_per_stage(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = {"_target_": "paradigms.runner.tensorboard_logger.StageTensorBoardLogger"}
    metrics = linear_stage(tmp_path, {"tensorboard": spec})
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    read = EventAccumulator(str(events)).Reload()
    assert len(read.Scalars("val/acc")) == 2, "the fit's values, one per epoch"
    assert read.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])


def test_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    run = [*SCRATCH, "trainer.max_epochs=3", "logger=[csv,mlflow]"]
    killed = _kill_after_checkpoint(tmp_path, epochs_done=1, run=run)
    first_id = json.loads((killed / "trackers.json").read_text())["mlflow"]["run_id"]
    cli(f"resume={killed}", output_root=tmp_path)

    runs = _mlflow_client(tmp_path).search_runs(
        [e.experiment_id for e in _mlflow_client(tmp_path).search_experiments()]
    )
    assert [r.info.run_id for r in runs] == [first_id], "one tracker run, continued"
    assert runs[0].data.metrics["test/acc"] == pytest.approx(summary(killed)["metrics"]["test/acc"])
    assert runs[0].info.status == "FINISHED"


def _wandb_records(path: Path):
    """The records of an offline W&B run file (W&B's own protobuf ``Record`` in its log
    format: a 7-byte header, then 32 KiB blocks of crc, length, type and payload)."""
    from wandb.proto.wandb_internal_pb2 import Record

    block, data = 32768, path.read_bytes()
    position, payload = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block
            continue
        length, kind = (
            int.from_bytes(data[position + 4 : position + 6], "little"),
            data[position + 6],
        )
        payload += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            yield Record.FromString(payload)
            payload = b""


def test_wandb_offline_run_holds_the_summary_metrics(out: Path) -> None:
    pytest.importorskip("wandb")
    cli(*SCRATCH, "logger=[csv,wandb]", "trainer.max_epochs=1", output_root=out)
    run_dir = run_dirs(out, "scratch")[0]
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"]
    files = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files, "the offline run is kept under the run directory"
    logged: dict[str, float] = {}
    for file in files:
        for record in _wandb_records(file):
            if record.WhichOneof("record_type") == "history":
                items = record.history.item  # a key with "/" is stored split, in nested_key
                logged.update(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
    expected = summary(run_dir)["metrics"]["test/acc"]
    assert logged["test/acc"] == pytest.approx(expected)
    assert logged["summary/test/acc"] == pytest.approx(expected)
