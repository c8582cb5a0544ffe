"""The multitask paradigm end to end through the real CLI, on tiny settings."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.datamodules.images_on_disk import csv_dataset
from tests.helpers import FAST, cli, run_dirs, summary

RUN = [*FAST, "paradigm=multitask", "trainer.max_epochs=1"]


def test_multitask_against_single_task_models(out: Path) -> None:
    cli(*RUN, output_root=out)
    run = run_dirs(out, "multitask")[0]
    result = summary(run)
    metrics = result["metrics"]
    assert [row["name"] for row in result["rows"]] == [
        "multitask (equal)",
        "single-task digit",
        "single-task rotation",
        "single-task parity",
    ]
    for task in ("digit", "rotation", "parity"):
        assert 0 <= metrics[f"test/{task}/acc"] <= 1
        assert 0 <= metrics[f"single_task/test/{task}/acc"] <= 1
        assert (run / "compare" / "single_task" / task / "model.safetensors").is_file()
    assert "test/delta_m_pct" in metrics
    assert metrics["params/multitask"] < metrics["params/single_task_sum"]
    assert metrics["time_s/multitask"] > 0 and metrics["time_s/single_task_sum"] > 0
    assert (run / "model.safetensors").is_file()


def test_uncertainty_weights_are_logged_and_move(out: Path) -> None:
    cli(
        *RUN,
        "trainer.max_epochs=2",
        "compare=none",
        "paradigm/weighting=uncertainty",
        output_root=out,
    )
    rows = list(csv.DictReader((run_dirs(out, "multitask")[0] / "metrics.csv").open()))
    weights = [
        float(r["train/weight/digit_step"]) for r in rows if r.get("train/weight/digit_step")
    ]
    assert len(weights) >= 2 and weights[0] != weights[-1]


def test_multitask_on_a_csv_of_image_files(tmp_path: Path, out: Path) -> None:
    """data=csv: the columns paradigm.tasks names are the tasks (parity: names, some empty)."""
    table = csv_dataset(tmp_path / "csv")
    spec = "type:{},num_outputs:{},loss:{},metrics:[acc],direction:max"
    tasks = {"digit": spec.format("multiclass", 10, "cross_entropy")}
    tasks["parity"] = spec.format("binary", 1, "bce")
    data = ["data=csv", f"data.root={table.parent}", f"data.csv={table}", "data.path_column=file"]
    data += ["data.loader.num_workers=0", "compare=none", "optimized_metric=test/score"]
    cli(*RUN, *data, *(f"+paradigm.tasks.{k}={{{v}}}" for k, v in tasks.items()), output_root=out)
    metrics = summary(run_dirs(out, "multitask")[0])["metrics"]
    assert 0 <= metrics["test/digit/acc"] <= 1 and 0 <= metrics["test/parity/acc"] <= 1
    wrong = f"+paradigm.tasks.colour={{{tasks['parity']}}}"
    process = cli(*RUN, *data, wrong, output_root=tmp_path / "wrong", check=False)
    assert process.returncode == 2 and len(process.stderr.strip().splitlines()) == 1
    assert process.stderr.startswith("error: paradigm.tasks='colour'")


def test_a_wrong_task_spec_stops_with_one_line(out: Path) -> None:
    process = cli(*RUN, "paradigm.tasks.digit.direction=min", output_root=out, check=False)
    assert process.returncode == 2
    assert "paradigm.tasks.digit.direction='min'" in process.stderr
    assert not run_dirs(out, "multitask")


def test_fp16_with_a_gradient_method_stops_before_training(out: Path) -> None:
    process = cli(
        *RUN,
        "paradigm/weighting=pcgrad",
        "trainer.precision=16-mixed",
        output_root=out,
        check=False,
    )
    assert process.returncode == 2 and "trainer.precision" in process.stderr
