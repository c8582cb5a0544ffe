"""Batching for data held in memory as tensors.

A dataset that fits in memory is batched by indexing whole tensors, so a step costs one
gather instead of a Python call per sample. Shuffling is keyed by (seed, epoch) and sharding
by rank, so the order of every epoch is the same after a resume and under DDP; Lightning
calls ``set_epoch`` on the sampler at the start of each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


class EpochBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches of indices; the permutation depends only on (seed, epoch)."""

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
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
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

    def __iter__(self) -> Iterator[list[int]]:
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
