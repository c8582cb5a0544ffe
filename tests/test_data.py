"""Real image datasets on disk (digits written as PNG/JPEG files, a CSV, MNIST's files, a saved
Hugging Face dataset), each trained on through the CLI; bad data stops with the file named."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, cli, run_dirs, summary
from PIL import Image
from sklearn.datasets import load_digits

RUN = [*FAST, "paradigm=scratch", "trainer.max_epochs=1", "data.loader.num_workers=0"]
PER_CLASS = 12  # images written per digit: 120 files, a few seconds per run


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The first PER_CLASS images of each digit as 8-bit grey arrays, and their labels."""
    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:PER_CLASS] for c in range(10)])
    return (digits.images[keep] * 255 / 16).astype(np.uint8), digits.target[keep]


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize((16, 16)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """root/<digit>/<n>.png|jpg: PNG and JPEG mixed, as real folders are."""
    root = tmp_path / "folder"
    for n, (pixels, label) in enumerate(zip(*_digits(), strict=True)):
        _write(root / str(label) / f"{n}.{'png' if n % 2 else 'jpg'}", pixels)
    return root


@pytest.fixture
def csv_data(tmp_path: Path) -> tuple[Path, Path]:
    """images/<n>.png and labels.csv with two tasks: the digit, and odd/even (some missing)."""
    root = tmp_path / "csv"
    rows = []
    for n, (pixels, label) in enumerate(zip(*_digits(), strict=True)):
        _write(root / "images" / f"{n}.png", pixels)
        parity = "" if n % 7 == 0 else ("odd" if label % 2 else "even")
        rows.append({"file": f"images/{n}.png", "digit": label, "parity": parity})
    table = root / "labels.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "digit", "parity"])
        writer.writeheader()
        writer.writerows(rows)
    return root, table


def _csv_run(root: Path, table: Path, *extra: str) -> list[str]:
    return [
        "data=csv",
        f"data.root={root}",
        f"data.csv={table}",
        "data.path_column=file",
        *extra,
    ]


def test_image_folder_trains_and_reports(folder: Path, out: Path) -> None:
    cli(*RUN, "data=image_folder", f"data.root={folder}", output_root=out)
    metrics = summary(run_dirs(out, "scratch")[0])["metrics"]
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_image_folder_pre_split_classes_and_few_shot(folder: Path, tmp_path: Path) -> None:
    from datamodules.image_folder import ImageFolderDataModule

    split = tmp_path / "split"
    for image in sorted(folder.rglob("*.*")):
        n = int(image.stem)
        name = "test" if n % 4 == 0 else "train"
        target = split / name / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    dm = ImageFolderDataModule(
        root=str(split), backbone="test_resnet", image_size=32, classes=[3, "7"], train_per_class=4
    )
    dm.setup()
    assert dm.num_classes == 2 and dm.tasks == {"label": ["3", "7"]}
    assert len(dm.splits["train"]) == 8, "four training images of each kept class"
    assert set(dm.splits["test"].labels.tolist()) == {0, 1}
    assert all("test" in dm.splits["test"].images.name(i) for i in range(len(dm.splits["test"])))
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and labels.dtype.is_floating_point is False


def test_csv_single_label_trains(csv_data: tuple[Path, Path], out: Path) -> None:
    cli(*RUN, *_csv_run(*csv_data, "data.label_columns=[digit]"), output_root=out)
    assert "test/acc" in summary(run_dirs(out, "scratch")[0])["metrics"]


def test_csv_several_label_columns_are_tasks(csv_data: tuple[Path, Path], out: Path) -> None:
    from datamodules.csv_images import CsvDataModule
    from datamodules.images import IGNORE

    root, table = csv_data
    dm = CsvDataModule(
        root=str(root),
        csv=str(table),
        path_column="file",
        label_columns=["digit", "parity"],
        backbone="test_resnet",
        image_size=32,
    )
    dm.setup()
    assert dm.tasks == {"digit": [str(d) for d in range(10)], "parity": ["even", "odd"]}
    labels = dm.splits["train"].labels
    assert labels.shape[1] == 2 and (labels[:, 1] == IGNORE).any()
    run = cli(
        *RUN,
        *_csv_run(*csv_data, "data.label_columns=[digit,parity]"),
        output_root=out,
        check=False,
    )
    assert run.returncode == 2 and "tasks ['digit', 'parity']" in run.stderr


def test_torchvision_mnist_files_train(tmp_path: Path, out: Path) -> None:
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    pixels, labels = _digits()
    for prefix, keep in (("train", slice(0, None, 2)), ("t10k", slice(1, None, 2))):
        images, targets = pixels[keep], labels[keep].astype(np.uint8)
        header = struct.pack(">iiii", 2051, len(images), 8, 8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">ii", 2049, len(targets)) + targets.tobytes()
        )
    cli(*RUN, "data=torchvision", "data.name=MNIST", f"data.root={tmp_path / 'tv'}", output_root=out)
    assert "test/acc" in summary(run_dirs(out, "scratch")[0])["metrics"]


def test_torchvision_without_files_says_where_to_put_them(tmp_path: Path, out: Path) -> None:
    run = cli(
        *RUN, "data=torchvision", "data.name=CIFAR10", f"data.root={tmp_path}", output_root=out, check=False
    )
    assert run.returncode == 2
    assert f"data.root='{tmp_path}'" in run.stderr and "download=true" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_hf_saved_dataset_trains(tmp_path: Path, out: Path) -> None:
    datasets = pytest.importorskip("datasets")
    pixels, labels = _digits()
    features = datasets.Features(
        {"img": datasets.Image(), "digit": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    table = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "digit": labels.tolist()}, features=features
    )
    table.train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "hf"))
    hf = ["data=hf", f"data.path={tmp_path / 'hf'}", "data.image_column=img"]
    cli(*RUN, *hf, "data.label_column=digit", output_root=out)
    assert "test/acc" in summary(run_dirs(out, "scratch")[0])["metrics"]


def test_corrupt_image_is_named_or_skipped(folder: Path, out: Path) -> None:
    bad = folder / "4" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    run = cli(*RUN, "data=image_folder", f"data.root={folder}", "data.val_fraction=0.5",
              "data.test_fraction=0.25", output_root=out, check=False)
    assert run.returncode != 0 and str(bad) in run.stderr
    skipped = cli(*RUN, "data=image_folder", f"data.root={folder}", "data.skip_bad_files=true",
                  output_root=out)
    assert str(bad) in skipped.stderr, "the skipped file is named in a warning"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("empty_class", "data.root="),
        ("missing_root", "data.root="),
        ("missing_column", "data.label_columns='grade'"),
    ],
)
def test_bad_data_stops_with_one_line(
    change: str, key: str, folder: Path, csv_data: tuple[Path, Path], out: Path
) -> None:
    if change == "empty_class":
        (folder / "empty").mkdir()
        data = ["data=image_folder", f"data.root={folder}"]
    elif change == "missing_root":
        data = ["data=image_folder", f"data.root={folder / 'nowhere'}"]
    else:
        data = _csv_run(*csv_data, "data.label_columns=[grade]")
    run = cli(*RUN, *data, output_root=out, check=False)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith(f"error: {key}") and len(run.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.rglob("*.ckpt"))
