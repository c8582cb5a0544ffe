"""The base of every datamodule whose data is held in memory as tensors.

A subclass says only how to build its tensors (``build``, or ``splits`` given when it is
constructed); this class owns the rest, so every in-memory dataset behaves alike: ``splits``
of ``TensorBatches`` (which distillation, federated learning and the feature cache read
directly), loaders whose order is keyed by (seed, epoch) and sharded by rank, one move of
each split to the trainer's device, and the flags paradigms ask of their data
(``in_memory``, ``random_augmentation``).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.loading import TensorBatches, split_loader


class InMemoryDataModule(pl.LightningDataModule):
    """Train/val/test tensors, batched by indexing (``datamodules.loading.tensor_loader``).

    Config keys: batch_size (training), eval_batch_size (validation and test), seed (the
    run's, given by the runner: it keys the shuffling). A subclass sets ``num_classes`` and
    ``random_augmentation`` (true when it changes training batches at random, so that
    features of a frozen backbone cannot be cached).
    """

    in_memory = True
    num_classes: int
    random_augmentation = False

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.splits: dict[str, TensorBatches] = {}

    def build(self) -> dict[str, TensorBatches]:
        """The ``train``, ``val`` and ``test`` tensors, each sample's image first."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.build()

    def augment_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch of images as training sees it (random augmentation, on the
        batch's device, from torch's global generator); the identity unless a subclass
        augments. Federated clients read their batches through it too."""
        return x

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        if self.trainer is None or not self.trainer.training:
            return batch
        return (self.augment_batch(batch[0]), *batch[1:])

    def train_dataloader(self) -> DataLoader:
        return split_loader(self, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test", shuffle=False)
