"""The digits datamodule and the in-memory loader: splits, few-shot, shift, epoch-keyed order."""

from __future__ import annotations

import torch

from datamodules.digits import DigitsDataModule
from datamodules.loading import EpochBatchSampler


def _setup(**kwargs) -> DigitsDataModule:
    datamodule = DigitsDataModule(**kwargs)
    datamodule.setup("fit")
    return datamodule


def test_splits_are_disjoint_stratified_and_fixed_by_split_seed() -> None:
    a, b = _setup(seed=0), _setup(seed=7)
    sizes = {name: len(split) for name, split in a.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] > 250
    for name in ("train", "val", "test"):
        assert torch.equal(a.splits[name].tensors[0], b.splits[name].tensors[0]), (
            "run seed must not move the split"
        )
    counts = torch.bincount(a.splits["test"].tensors[1], minlength=10)
    assert counts.min() >= 25, "every class is in the test split"


def test_class_subset_is_relabelled_and_few_shot_keeps_n_per_class() -> None:
    datamodule = _setup(classes=[5, 6, 7, 8, 9], train_per_class=4)
    labels = datamodule.splits["train"].tensors[1]
    assert datamodule.num_classes == 5
    assert torch.equal(torch.bincount(labels), torch.full((5,), 4))
    assert set(datamodule.splits["test"].tensors[1].tolist()) == {0, 1, 2, 3, 4}


def test_shift_changes_images_deterministically() -> None:
    clean = _setup().splits["test"].tensors[0]
    shifted = _setup(shift={"rotate": 45, "invert": True, "noise": 0.2}).splits["test"].tensors[0]
    again = _setup(shift={"rotate": 45, "invert": True, "noise": 0.2}).splits["test"].tensors[0]
    assert clean.shape == shifted.shape == (len(clean), 3, 32, 32)
    assert not torch.allclose(clean, shifted)
    assert torch.equal(shifted, again)


def test_batch_order_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(0)
    other = list(sampler)
    fresh = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    fresh.set_epoch(2)
    assert list(fresh) == first and first != other
    assert sorted(i for batch in first for i in batch) == list(range(50))


def test_ranks_get_equal_disjoint_shards() -> None:
    shards = []
    for rank in range(2):
        sampler = EpochBatchSampler(51, 8, shuffle=True, seed=0, rank=rank, world_size=2)
        shards.append([i for batch in sampler for i in batch])
    assert len(shards[0]) == len(shards[1]) == 26
    assert set(shards[0]) | set(shards[1]) == set(range(51))
