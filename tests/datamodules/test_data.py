"""The image datamodules on small real datasets on disk: splits, subsets, tasks, transforms,
loader order, and one clear error for each kind of bad data."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.csv_images import CsvDataModule
from datamodules.image_folder import ImageFolderDataModule
from datamodules.images import BadImageError
from datamodules.labels import IGNORE
from datamodules.loading import EpochBatchSampler, EpochSampler, TensorBatches
from datamodules.torchvision_sets import TorchvisionDataModule
from paradigms.runner.errors import ConfigError
from tests.datamodules.images_on_disk import csv_dataset, digits, image_folder, write_image

COMMON: dict[str, Any] = {"backbone": "test_resnet", "image_size": 32, "batch_size": 8}
COMMON["loader"] = {"num_workers": 0}


def _every_batch(dm: Any) -> int:
    loaders = (dm.train_dataloader, dm.val_dataloader, dm.test_dataloader)
    return sum(len(labels) for make in loaders for _, labels in make())


def test_pre_split_folders_with_class_subset_and_few_shot(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "flat")
    split = tmp_path / "split"
    for image in sorted(folder.rglob("*.*")):
        name = "test" if int(image.stem) % 4 == 0 else "train"
        write_image(split / name / image.parent.name / f"{image.stem}.png", digits()[0][0])
    dm = ImageFolderDataModule(root=str(split), classes=[3, "7"], train_per_class=4, **COMMON)
    dm.setup()
    assert dm.num_classes == 2 and dm.tasks == {"label": ["3", "7"]}
    assert dm.class_names == ["3", "7"]  # recorded with an exported model
    assert len(dm.splits["train"]) == 8, "four training images of each kept class"
    assert len(dm.splits["val"]) > 0, "val is carved out of train"
    test = dm.splits["test"]
    assert set(test.labels.tolist()) == {0, 1}
    assert all(f"{split / 'test'}" in test.images.name(i) for i in range(len(test)))
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and labels.dtype == torch.long
    few = ImageFolderDataModule(root=str(split), val_per_class=1, **COMMON)
    few.setup()
    carved = ImageFolderDataModule(root=str(split), **COMMON)
    carved.setup()
    assert torch.bincount(few.splits["val"].labels).tolist() == [1] * 10, "one per class"
    assert set(few.splits["val"].images.index.tolist()) < set(
        carved.splits["val"].images.index.tolist()
    ), "taken from the validation split"


def test_split_is_stratified_and_seeded_not_by_run_seed(tmp_path: Path) -> None:
    root = str(image_folder(tmp_path / "folder"))
    first = ImageFolderDataModule(root=root, seed=0, **COMMON)
    again = ImageFolderDataModule(root=root, seed=5, **COMMON)
    first.setup(), again.setup()
    for split in ("train", "val", "test"):
        assert (
            first.splits[split].images.index.tolist() == again.splits[split].images.index.tolist()
        )
    counts = torch.bincount(first.splits["test"].labels, minlength=10)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1


def test_eval_transform_is_deterministic_and_stats_come_from_the_backbone(tmp_path: Path) -> None:
    root = str(image_folder(tmp_path / "folder"))
    augment = {"auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25}
    dm = ImageFolderDataModule(root=root, augment=augment, **{**COMMON, "backbone": "resnet18"})
    dm.setup()
    val = dm.splits["val"]
    assert torch.equal(val[0][0], val[0][0])
    normalize = val.transform.transforms[-1]
    assert tuple(normalize.mean.tolist()) == pytest.approx((0.485, 0.456, 0.406))
    train = repr(dm.splits["train"].transform)
    assert "RandomResizedCrop" in train and "RandAugment" in train and "RandomErasing" in train


def test_csv_label_columns_are_tasks_with_missing_labels(tmp_path: Path) -> None:
    table = csv_dataset(tmp_path / "csv")
    options = {"root": str(tmp_path / "csv"), "csv": str(table), "path_column": "file"}
    dm = CsvDataModule(label_columns=["digit", "parity"], **options, **COMMON)
    dm.setup()
    assert dm.tasks == {"digit": [str(d) for d in range(10)], "parity": ["even", "odd"]}
    labels = dm.splits["train"].labels
    assert labels.shape[1] == 2 and (labels[:, 1] == IGNORE).any()
    images, digit, parity = next(iter(dm.train_dataloader()))
    assert len(images) == len(digit) == len(parity) and digit.dtype == torch.long
    with pytest.raises(ConfigError, match="tasks \\['digit', 'parity'\\]"):
        dm.num_classes  # noqa: B018
    single = CsvDataModule(label_columns=["parity"], **options, **COMMON)
    single.setup()
    assert single.num_classes == 2 and (single.splits["train"].labels >= 0).all()
    with pytest.raises(ConfigError, match="data.label_columns='grade'.*no such column"):
        CsvDataModule(label_columns=["grade"], **options, **COMMON).setup()


def test_in_memory_holds_the_evaluation_images_as_tensors(tmp_path: Path) -> None:
    root = str(image_folder(tmp_path / "folder"))
    files = ImageFolderDataModule(root=root, **COMMON)
    cached = ImageFolderDataModule(root=root, in_memory=True, **COMMON)
    files.setup(), cached.setup()
    assert files.random_augmentation and not cached.random_augmentation
    assert all(isinstance(split, TensorBatches) for split in cached.splits.values())
    for split in ("train", "val", "test"):
        samples = files.splits[split]
        evaluation = samples.transform if split != "train" else files.splits["val"].transform
        images = torch.stack([evaluation(samples.images.load(i).convert("RGB")) for i in range(4)])
        assert torch.equal(cached.splits[split].tensors[0][:4], images)
        assert torch.equal(cached.splits[split].tensors[1], samples.labels)
    shuffled = [labels for _, labels in cached.train_dataloader()]
    assert sorted(torch.cat(shuffled).tolist()) == sorted(files.splits["train"].labels.tolist())


def test_empty_class_folder_and_mismatched_splits_stop(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "folder")
    (root / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty.*holds no images"):
        ImageFolderDataModule(root=str(root), **COMMON).setup()
    split = tmp_path / "split"
    write_image(split / "train" / "a" / "0.png", digits()[0][0])
    write_image(split / "train" / "b" / "0.png", digits()[0][0])
    write_image(split / "test" / "a" / "0.png", digits()[0][0])
    with pytest.raises(ConfigError, match="differ from train's"):
        ImageFolderDataModule(root=str(split), **COMMON).setup()


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_is_named_or_skipped(tmp_path: Path, workers: int) -> None:
    root = image_folder(tmp_path / "folder")
    bad = root / "4" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    options = {**COMMON, "loader": {"num_workers": workers, "persistent_workers": False}}
    dm = ImageFolderDataModule(root=str(root), **options)
    dm.setup()
    with pytest.raises(BadImageError, match=str(bad)):
        _every_batch(dm)
    skipping = ImageFolderDataModule(root=str(root), skip_bad_files=True, **COMMON)
    skipping.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _every_batch(skipping) == 120
    assert any(str(bad) in str(w.message) for w in caught)


def test_torchvision_without_files_says_where_to_put_them(tmp_path: Path) -> None:
    dm = TorchvisionDataModule(name="CIFAR10", root=str(tmp_path), **COMMON)
    with pytest.raises(ConfigError, match="put the files .* or set data.download=true"):
        dm.setup()
    with pytest.raises(ConfigError, match="no such dataset"):
        TorchvisionDataModule(name="CIFAR11", root=str(tmp_path), **COMMON).setup()


def test_hf_missing_column_is_named(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from datamodules.hf import HFDataModule
    from tests.datamodules.images_on_disk import hf_dataset

    root = hf_dataset(tmp_path / "hf")
    dm = HFDataModule(path=str(root), image_column="img", label_column="label", **COMMON)
    with pytest.raises(ConfigError, match="data.label_column='label'.*'img', 'digit'"):
        dm.setup()


def test_sample_order_is_keyed_by_seed_and_epoch_and_shared_with_batches() -> None:
    def order(epoch: int, rank: int = 0, world: int = 1, seed: int = 0) -> list[int]:
        sampler = EpochSampler(10, shuffle=True, seed=seed, rank=rank, world_size=world)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1) == order(1) and order(1) != order(2) and order(1, seed=1) != order(1)
    shards = order(3, 0, 2) + order(3, 1, 2)
    assert len(order(3, 0, 2)) == len(order(3, 1, 2)) == 5 and sorted(shards) == list(range(10))
    batches = EpochBatchSampler(10, 4, shuffle=True, seed=0)
    batches.set_epoch(1)
    assert [i for batch in batches for i in batch] == order(1)
