"""Small real image datasets written to disk from scikit-learn's digits, for the data tests."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

PER_CLASS = 12  # images written per digit: 120 files, a few seconds per training run


def digits(per_class: int = PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images of each digit as 8-bit grey arrays, and their labels."""
    data = load_digits()
    keep = np.concatenate([np.flatnonzero(data.target == c)[:per_class] for c in range(10)])
    return (data.images[keep] * 255 / 16).astype(np.uint8), data.target[keep]


def write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize((16, 16)).save(path)


def image_folder(root: Path, per_class: int = PER_CLASS) -> Path:
    """root/<digit>/<n>.png|jpg: PNG and JPEG mixed, as real folders are."""
    for n, (pixels, label) in enumerate(zip(*digits(per_class), strict=True)):
        write_image(root / str(label) / f"{n}.{'png' if n % 2 else 'jpg'}", pixels)
    return root


def csv_dataset(root: Path, per_class: int = PER_CLASS) -> Path:
    """root/images/<n>.png and root/labels.csv (file, digit, parity: some cells empty; writer:
    one of five, each writing its own share of the digits; site: one value)."""
    rows = []
    for n, (pixels, label) in enumerate(zip(*digits(per_class), strict=True)):
        write_image(root / "images" / f"{n}.png", pixels)
        parity = "" if n % 7 == 0 else ("odd" if label % 2 else "even")
        writer = f"w{(label + n % 3) % 5}"  # each writer holds some digits far more than others
        row = {"file": f"images/{n}.png", "digit": label, "parity": parity, "writer": writer}
        rows.append({**row, "site": "lab"})
    table = root / "labels.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def mnist_files(root: Path) -> Path:
    """The four raw files torchvision.datasets.MNIST reads, holding 8x8 digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    pixels, labels = digits()
    for prefix, keep in (("train", slice(0, None, 2)), ("t10k", slice(1, None, 2))):
        images, targets = pixels[keep], labels[keep].astype(np.uint8)
        header = struct.pack(">iiii", 2051, len(images), 8, 8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">ii", 2049, len(targets)) + targets.tobytes()
        )
    return root


def hf_dataset(root: Path) -> Path:
    """A datasets.DatasetDict (train, test) with an ``img`` and a ``digit`` column."""
    import datasets

    pixels, labels = digits()
    features = datasets.Features(
        {"img": datasets.Image(), "digit": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    table = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "digit": labels.tolist()}, features=features
    )
    table.train_test_split(test_size=0.25, seed=0).save_to_disk(str(root))
    return root
