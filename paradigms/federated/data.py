"""The clients' view of any datamodule: the training set as labels (what a partition splits),
its other columns (what a natural partition groups by), and a reader that turns a batch of
training indices into the images local training sees.

Two readers, one contract: where the datamodule holds tensors in memory, a batch is one
gather on the training device passed through the datamodule's own batch augmentation (the
fast path); where it reads files, a batch is read sample by sample through the datamodule's
training transform, random augmentation included. Validation and test images are decoded
once with the evaluation transform (deterministic, so nothing changes by caching them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from datamodules.loading import TensorBatches

Reader = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TensorImages:
    """Images held as one tensor on the training device; ``augment`` maps a batch (identity
    for evaluation)."""

    def __init__(self, images: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor]):
        self.images, self.augment = images, augment

    def __call__(self, index: torch.Tensor, labels: torch.Tensor):
        return self.augment(self.images[index.to(self.images.device)]), labels


class FileImages:
    """Images read from their files through ``samples``' transform, one batch at a time; an
    unreadable file the datamodule skips takes its label with it."""

    def __init__(self, samples: Any, device: torch.device) -> None:
        self.samples, self.device = samples, device

    def __call__(self, index: torch.Tensor, labels: torch.Tensor):
        items = [self.samples[i] for i in index.tolist()]
        kept = [k for k, item in enumerate(items) if item is not None]
        images = torch.stack([items[k][0] for k in kept]).to(self.device)
        return images, labels[torch.tensor(kept, device=labels.device)]


@dataclass
class TrainingSet:
    """What the federation is built from, on the training device."""

    labels: torch.Tensor  # [N] the training split's classes (on the CPU: partitions read it)
    columns: dict[str, np.ndarray]  # the training split's other columns (CSV, HF), by name
    train: Reader  # a training batch as local training sees it (augmented)
    evaluation: Reader  # the same samples as evaluation sees them (client holdouts)
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def training_labels(datamodule: Any) -> torch.Tensor:
    """The classes of ``datamodule``'s training split (set up), on the CPU."""
    train = datamodule.splits["train"]
    return train.tensors[1].cpu() if isinstance(train, TensorBatches) else train.labels


def training_set(datamodule: Any, device: torch.device) -> TrainingSet:
    """``datamodule`` (set up) read for federated clients on ``device``."""
    train = datamodule.splits["train"]
    columns = getattr(datamodule, "train_columns", {})
    if isinstance(train, TensorBatches):
        images, labels = train.tensors[0].to(device), training_labels(datamodule)
        reader = TensorImages(images, datamodule.augment_batch)
        evaluation = TensorImages(images, lambda x: x)
        val, test = (_pair(datamodule.splits[s], device) for s in ("val", "test"))
        return TrainingSet(labels, columns, reader, evaluation, val, test)
    plain = datamodule.samples(train.images, datamodule.evaluation_transform)
    val, test = (_pair(datamodule.decode(datamodule.splits[s]), device) for s in ("val", "test"))
    return TrainingSet(
        training_labels(datamodule),
        columns,
        FileImages(train, device),
        FileImages(plain, device),
        val,
        test,
    )


def _pair(split: TensorBatches, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images and (first) labels on ``device``."""
    return split.tensors[0].to(device), split.tensors[1].to(device)
