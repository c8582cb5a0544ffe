"""A tiny training through the CLI on each real-data datamodule, from files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datamodules.images_on_disk import csv_dataset, hf_dataset, image_folder, mnist_files
from tests.helpers import FAST, cli, run_dirs, summary

RUN = [*FAST, "trainer.max_epochs=1", "data.loader.num_workers=0"]


def _data(kind: str, tmp_path: Path) -> list[str]:
    if kind == "image_folder":
        return ["data=image_folder", f"data.root={image_folder(tmp_path / 'folder')}"]
    if kind == "csv":
        table = csv_dataset(tmp_path / "csv")
        return ["data=csv", f"data.root={tmp_path / 'csv'}", f"data.csv={table}"] + [
            "data.path_column=file",
            "data.label_columns=[digit]",
        ]
    if kind == "torchvision":
        root = mnist_files(tmp_path / "tv")
        # 60 training files: a 0.3 validation share leaves one or more of each digit
        return ["data=torchvision", "data.name=MNIST", f"data.root={root}", "data.val_fraction=0.3"]
    pytest.importorskip("datasets")
    root = hf_dataset(tmp_path / "hf")
    return ["data=hf", f"data.path={root}", "data.image_column=img", "data.label_column=digit"]


@pytest.mark.parametrize("kind", ["csv", "torchvision", "hf"])  # image_folder: the finetune test
def test_scratch_trains_on_each_datamodule(kind: str, tmp_path: Path, out: Path) -> None:
    cli(*RUN, "paradigm=scratch", *_data(kind, tmp_path), output_root=out)
    metrics = summary(run_dirs(out, "scratch")[0])["metrics"]
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["test/loss"] > 0


def test_finetune_from_a_weights_file_on_an_image_folder(tmp_path: Path, out: Path) -> None:
    """Scratch on an image folder (3 of its classes), then finetune on all 10 from its file."""
    data = _data("image_folder", tmp_path)
    cli(*RUN, "paradigm=scratch", *data, "data.classes=[0,1,2]", output_root=out)
    weights = run_dirs(out, "scratch")[0] / "model.safetensors"
    cli(
        *RUN,
        "paradigm=finetune",
        *data,
        f"backbone.weights={weights}",
        "compare=none",
        output_root=out,
    )
    result = summary(run_dirs(out, "finetune")[0])
    assert "test/acc" in result["metrics"]
    assert any("new head" in note for note in result["notes"]), "3-class head vs 10 classes"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (["data=image_folder", "data.root=nowhere"], "data.root="),
        (["data=csv", "data.root=."], "data.csv="),
    ],
)
def test_missing_data_stops_before_anything_is_built(data: list[str], key: str, out: Path) -> None:
    run = cli(*RUN, *data, output_root=out, check=False)
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {key}") and len(run.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.rglob("*.ckpt"))
