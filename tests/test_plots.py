"""The plots: every kind is a valid, non-blank PNG; a plot that cannot be made only warns;
a real run writes its curves, confusion matrix and comparison into the run directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST, cli, run_dirs, summary
from paradigms.contract import Row
from paradigms.runner import plots


def assert_picture(path: Path | None) -> None:
    assert path is not None and path.is_file(), path
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.var() > 0, f"{path.name} is blank"


def _metrics_csv(path: Path, columns: dict[str, list[float]], x: str = "epoch") -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[x, *columns])
        writer.writeheader()
        for i in range(len(next(iter(columns.values())))):
            writer.writerow({x: i, **{k: v[i] for k, v in columns.items()}})
    return path


def test_every_kind_of_plot_is_a_picture(tmp_path: Path) -> None:
    learning = _metrics_csv(
        tmp_path / "metrics.csv",
        {
            "train/loss_epoch": [2.0, 1.0, 0.5],
            "val/loss": [2.1, 1.2, 0.9],
            "val/acc": [0.2, 0.6, 0.8],
        },
    )
    assert_picture(plots.learning_curves(learning, tmp_path / "curves.png"))
    matrix = [[8, 2, 0], [1, 9, 0], [0, 3, 7]]
    assert_picture(plots.confusion_matrix(matrix, tmp_path / "confusion.png"))
    assert_picture(plots.per_class_accuracy(matrix, tmp_path / "per_class.png", ["a", "b", "c"]))
    rows = [Row("transfer", {"test/acc": 0.9}), Row("scratch", {"test/acc": 0.6})]
    assert_picture(plots.comparison_bars(rows, tmp_path / "comparison.png"))
    tasks = plots.read_metrics(
        _metrics_csv(
            tmp_path / "tasks.csv",
            {
                "val/digit/acc": [0.3, 0.7],
                "val/rotation/acc": [0.5, 0.6],
                "weight/digit": [0.5, 0.7],
                "weight/rotation": [0.5, 0.3],
            },
        )
    )
    assert plots.has_task_columns(tasks)
    assert_picture(plots.task_curves(tasks, tmp_path / "tasks.png"))
    rounds = _metrics_csv(tmp_path / "rounds.csv", {"val/acc": [0.1, 0.5, 0.7]}, x="round")
    assert_picture(plots.learning_curves(rounds, tmp_path / "rounds.png"))
    assert_picture(
        plots.client_label_distribution([[5, 0, 1], [0, 6, 2]], tmp_path / "clients.png")
    )


def test_a_plot_that_cannot_be_made_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="not made"):
        assert plots.curves([], tmp_path / "empty.png") is None
    with pytest.warns(UserWarning, match="not made"):
        assert plots.comparison_bars([Row("alone", {})], tmp_path / "alone.png") is None
    (tmp_path / "confusion_matrix.json").write_text('[["not a count"]]')
    with pytest.warns(UserWarning, match="not made"):
        assert plots.plot_run(tmp_path, []) == []


def test_a_finetune_run_writes_its_plots(out: Path) -> None:
    cli(*FAST, "paradigm=finetune", "source.max_epochs=1", output_root=out)
    run_dir = run_dirs(out, "finetune")[0]
    for name in (
        "learning_curves.png",
        "confusion_matrix.png",
        "per_class_accuracy.png",
        "comparison.png",
        "compare/scratch/learning_curves.png",
        "compare/source/confusion_matrix.png",
    ):
        assert_picture(run_dir / name)
    matrix = np.asarray(json.loads((run_dir / "confusion_matrix.json").read_text()))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(
        summary(run_dir)["metrics"]["test/acc"], abs=1e-6
    ), "the confusion matrix is the tested model's"
