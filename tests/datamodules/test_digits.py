"""The digits datamodule and the in-memory loader: splits, few-shot, shift, epoch-keyed order."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from datamodules.digits import DigitsDataModule
from datamodules.loading import EpochBatchSampler
from datamodules.multitask_digits import MultiTaskDigitsDataModule
from tests.helpers import ROOT


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


def _batches_digest(datamodule: DigitsDataModule, translate: bool = False) -> str:
    """A hash of the values and dtypes of three training batches of epochs 0 and 1 (randomly
    translated when ``translate``) and of every validation and test batch."""
    datamodule.setup("fit")
    digest = hashlib.sha256()

    def add(batch: tuple[torch.Tensor, ...]) -> None:
        for tensor in batch:
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.contiguous().numpy().tobytes())

    for epoch in (0, 1):
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for step, batch in zip(range(3), loader, strict=False):
            if translate:
                torch.manual_seed(step)
                batch = datamodule.on_after_batch_transfer(batch, 0)
            add(batch)
    for batch in [*datamodule.val_dataloader(), *datamodule.test_dataloader()]:
        add(batch)
    return digest.hexdigest()[:16]


# Digests measured on main before the datamodules shared a base (commit 35e86db): the same
# seed must give the same batches, bit for bit.
BEFORE = {
    "default": "34760a7370e2ad2e",
    "subset_fewshot_shift": "7f59e60b17a06401",
    "multitask_missing": "ae2e75afc0027a0e",
}
CASES = {
    "default": lambda: DigitsDataModule(seed=3, batch_size=32),
    "subset_fewshot_shift": lambda: DigitsDataModule(
        classes=[5, 6, 7, 8, 9],
        train_per_class=4,
        shift={"rotate": 30, "invert": True, "noise": 0.1},
        image_size=16,
        in_chans=1,
        mean=0.2,
        std=0.3,
        batch_size=8,
    ),
    "multitask_missing": lambda: MultiTaskDigitsDataModule(
        tasks=["digit", "rotation", "parity", "ink"],
        missing={"parity": 0.5, "ink": 0.2},
        image_size=16,
        seed=1,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batches_are_bit_identical_to_before_the_shared_base(case: str) -> None:
    assert _batches_digest(CASES[case]()) == BEFORE[case]


def test_translated_batches_are_bit_identical_to_before_the_shared_base() -> None:
    datamodule = DigitsDataModule(translate=0.2, seed=2)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.training = True  # translation applies to training batches only
    datamodule.trainer = trainer
    assert _batches_digest(datamodule, translate=True) == "33697fb6b58c33eb"


def test_val_per_class_takes_n_labels_per_class_from_the_val_split_only() -> None:
    whole, few = _setup(train_per_class=4), _setup(train_per_class=4, val_per_class=4)
    labels = few.splits["val"].tensors[1]
    assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), 4))
    rows = {tuple(x.flatten().tolist()) for x in whole.splits["val"].tensors[0]}
    assert all(tuple(x.flatten().tolist()) in rows for x in few.splits["val"].tensors[0]), (
        "the few validation images come from the validation split, never from test"
    )
    for name in ("train", "test"):
        assert torch.equal(whole.splits[name].tensors[0], few.splits[name].tensors[0])
    again = _setup(train_per_class=4, val_per_class=4, seed=3)
    assert torch.equal(few.splits["val"].tensors[0], again.splits["val"].tensors[0])
    other = _setup(train_per_class=4, val_per_class=4, split_seed=1)
    assert not torch.equal(few.splits["val"].tensors[0], other.splits["val"].tensors[0])


SHIFTED_DIGEST = """
import hashlib, torch
from datamodules.digits import apply_shift
x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
shifted = apply_shift(x, {"rotate": 30}, seed=0)
print(hashlib.sha256(shifted.numpy().tobytes()).hexdigest())
"""


def test_the_shifted_domain_does_not_depend_on_the_cpus_blas_kernel() -> None:
    """MKL picks its kernel by CPU (``MKL_CBWR=AUTO``); ``COMPATIBLE`` and ``AVX2`` force one.
    The rotated images must be the same bits under each (through affine_grid, AUTO differed on
    an AVX-512 Xeon)."""
    digests = set()
    for branch in ("AUTO", "COMPATIBLE", "AVX2"):
        env = {**os.environ, "MKL_CBWR": branch}
        done = subprocess.run(
            [sys.executable, "-c", SHIFTED_DIGEST],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        digests.add(done.stdout.strip())
    assert len(digests) == 1, digests
