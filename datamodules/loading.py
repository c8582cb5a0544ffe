"""Sampling and batching shared by every datamodule.

A dataset that fits in memory is batched by indexing whole tensors, so a step costs one
gather instead of a Python call per sample; a dataset read from files is loaded per sample by
DataLoader workers. Either way, shuffling is keyed by (seed, epoch) and sharding by rank, so
the order of every epoch is the same after a resume and under DDP (the Trainer runs with
``use_distributed_sampler=false``); Lightning calls ``set_epoch`` on the sampler at the start
of each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


class TensorBatches(Dataset):
    """Tensors of equal length whose item is a whole batch, selected by a list of indices."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"tensors differ in length: {sorted(lengths)}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.tensors[0].device)
        return tuple(t.index_select(0, index) for t in self.tensors)

    def to(self, device: torch.device) -> TensorBatches:
        """The same data on ``device`` (itself when already there): on a GPU, batches are
        gathered there and nothing is copied per step."""
        if all(t.device == device for t in self.tensors):
            return self
        return TensorBatches(*(t.to(device) for t in self.tensors))


class EpochSampler(Sampler[int]):
    """Yields this rank's sample indices; the permutation depends only on (seed, epoch)."""

    def __init__(
        self, num_samples: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        if self.shuffle and self.world_size > 1:
            # Equal shards keep DDP ranks in step; the few samples repeated are the ones
            # DistributedSampler would repeat too.
            per_rank = -(-self.num_samples // self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - self.num_samples]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self._indices())


class EpochBatchSampler(EpochSampler):
    """Yields this rank's batches of indices, in the order of ``EpochSampler``."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        super().__init__(num_samples, shuffle, seed, rank, world_size)
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        for batch in self._indices().split(self.batch_size):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        shard = len(self._indices())
        return shard // self.batch_size if self.drop_last else -(-shard // self.batch_size)


def tensor_loader(
    dataset: TensorBatches,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over in-memory tensors: one indexing call per batch, no workers needed."""
    sampler = EpochBatchSampler(
        len(dataset), batch_size, shuffle, seed, rank, world_size, drop_last=False
    )
    return DataLoader(dataset, sampler=sampler, batch_size=None)


def sample_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    workers: dict[str, Any] | None = None,
) -> DataLoader:
    """A DataLoader that reads one sample at a time, in (seed, epoch)-keyed order.

    ``workers`` holds ``num_workers``, ``pin_memory`` and ``persistent_workers``; pinning
    only applies with a GPU and persistence only with workers. Batches that lose unreadable samples (``None``) are
    collated without them.
    """
    options = dict(workers or {})
    options["pin_memory"] = bool(options.get("pin_memory")) and torch.cuda.is_available()
    if not options.get("num_workers"):
        options["persistent_workers"] = False
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_present, **options
    )


def split_loader(
    datamodule: Any, split: str, shuffle: bool, workers: dict[str, Any] | None = None
) -> DataLoader:
    """The loader of ``datamodule.splits[split]`` in this process: rank and world size come
    from the attached trainer; tensors in memory move to the trainer's device once (kept
    there for the next epoch) and are batched by indexing, other datasets are read per sample.
    ``datamodule`` holds ``splits``, ``batch_size`` (training), ``eval_batch_size`` and ``seed``.
    """
    trainer = datamodule.trainer
    rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
    batch = datamodule.batch_size if shuffle else datamodule.eval_batch_size
    data = datamodule.splits[split]
    if not isinstance(data, TensorBatches):
        return sample_loader(data, batch, shuffle, datamodule.seed, rank, world, workers)
    if trainer is not None:
        data = datamodule.splits[split] = data.to(trainer.strategy.root_device)
    return tensor_loader(data, batch, shuffle, datamodule.seed, rank, world)


def collate_present(batch: list[Any]) -> Any:
    """``default_collate`` of the samples that could be read (skipped ones are ``None``)."""
    return default_collate([item for item in batch if item is not None])
