"""Feature caching: a frozen backbone's features computed once, so only the head trains.

When every layer below the head is frozen and the training images are the same every epoch,
the backbone maps each image to the same feature vector every epoch; computing it once and
training the head on the stored vectors gives the same result for a fraction of the cost.
The cached splits are batched exactly as the datamodule batches its images
(``datamodules.loading``, same seed and batch sizes), so the head sees the same
batches in the same order as it would through the backbone.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from datamodules.in_memory import InMemoryDataModule
from datamodules.loading import TensorBatches
from paradigms.models.augmentation import random_inputs
from paradigms.runner.errors import ConfigError

SPLITS = ("train", "val", "test")


def cache_blockers(
    datamodule: Any, backbone: dict[str, Any], replace_last_blocks: int
) -> list[str]:
    """Why the backbone's features cannot be cached for this run (empty: they can)."""
    reasons = []
    if replace_last_blocks:
        reasons.append("replace_last_blocks trains layers below the head")
    varying = random_inputs(datamodule)
    if varying:
        reasons.append(varying)
    if backbone.get("drop_rate") or backbone.get("drop_path_rate"):
        reasons.append("backbone dropout / drop-path make the frozen backbone random")
    return reasons


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What timm feeds the classifier: pooled (and, where the model has one, neck) features."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _batches(loader: DataLoader, batch_size: int) -> Any:
    """The split's (x, y) batches in dataset order, whatever the loader's sampler."""
    dataset = loader.dataset
    if isinstance(dataset, TensorBatches):
        return (dataset[idx] for idx in torch.arange(len(dataset)).split(batch_size))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
    )


@torch.no_grad()
def compute_features(
    model: nn.Module, loader: DataLoader, batch_size: int, device: torch.device
) -> TensorBatches:
    """(features, labels) of every example of ``loader``'s dataset, in dataset order."""
    features, labels = [], []
    for x, y, *_ in _batches(loader, batch_size):
        features.append(pooled_features(model, x.to(device)).float().cpu())
        labels.append(y)
    return TensorBatches(torch.cat(features), torch.cat(labels))


@torch.no_grad()
def check_head_input(model: nn.Module, datamodule: Any, features: TensorBatches) -> None:
    """Stops when the classifier does not take exactly the cached features (a model whose
    forward adds something after ``forward_head(pre_logits=True)``)."""
    x, _, *_ = next(iter(_batches(datamodule.val_dataloader(), 4)))
    training = model.training
    model.eval()
    through = model(x)
    cached = model.get_classifier()(features.tensors[0][: len(x)])
    model.train(training)
    if not torch.allclose(through, cached, rtol=1e-4, atol=1e-5):
        raise ConfigError(
            "paradigm.cache_features",
            True,
            f"{type(model).__name__}'s classifier does not take its pooled features as they are",
            "set paradigm.cache_features=false",
        )


def feature_device(accelerator: str) -> torch.device:
    """This process's device for the one pass over the data."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cached_features(
    datamodule: Any, model: nn.Module, device: torch.device, batch_size: int
) -> dict[str, TensorBatches]:
    """(features, labels) of every split of ``datamodule``, computed on ``device``."""
    training = model.training
    model.eval().to(device)
    splits = {
        split: compute_features(
            model, getattr(datamodule, f"{split}_dataloader")(), batch_size, device
        )
        for split in SPLITS
    }
    model.train(training).cpu()
    check_head_input(model, datamodule, splits["val"])
    return splits


class FeatureData(InMemoryDataModule):
    """Cached features of a datamodule, batched as that datamodule batches its images; they
    are computed when it is constructed, so it keeps no reference to the model or images."""

    def __init__(self, datamodule: Any, model: nn.Module, accelerator: str = "cpu") -> None:
        eval_batch_size = getattr(datamodule, "eval_batch_size", datamodule.batch_size)
        super().__init__(datamodule.batch_size, eval_batch_size, datamodule.seed)
        self.num_classes = datamodule.num_classes
        device = feature_device(accelerator)
        self.splits = cached_features(datamodule, model, device, eval_batch_size)
