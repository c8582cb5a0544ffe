"""Partitioners: every sample in exactly one client, seeded, and skewed as claimed."""

from __future__ import annotations

import warnings

import pytest
import torch

from paradigms.federated.partition import IID, Dirichlet, QuantitySkew, Shards
from paradigms.runner.errors import ConfigError

LABELS = torch.arange(10).repeat_interleave(100)[
    torch.randperm(1000, generator=torch.Generator().manual_seed(0))
]


def split(partitioner, clients=20, seed=0, labels=LABELS):
    return partitioner(labels, clients, torch.Generator().manual_seed(seed))


def classes_per_client(parts, labels=LABELS):
    return torch.tensor([float(len(labels[p].unique())) for p in parts])


@pytest.mark.parametrize(
    "partitioner",
    [
        IID(),
        Dirichlet(0.5, 10),
        Dirichlet(0.1, 5),
        Shards(2),
        QuantitySkew("linear"),
        QuantitySkew("exponential"),
        QuantitySkew("lognormal"),
    ],
    ids=lambda p: f"{type(p).__name__}",
)
def test_every_sample_in_exactly_one_client(partitioner) -> None:
    parts = split(partitioner)
    assert len(parts) == 20 and all(len(p) > 0 for p in parts)
    everything = torch.cat(parts)
    assert len(everything) == len(LABELS), "sizes add up to the dataset"
    assert len(everything.unique()) == len(LABELS), "no sample in two clients"
    again = split(partitioner)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True)), "seeded"
    other = split(partitioner, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(parts, other, strict=True))


def test_small_alpha_skews_labels() -> None:
    skewed = classes_per_client(split(Dirichlet(0.1, 5))).mean()
    mild = classes_per_client(split(Dirichlet(100.0, 5))).mean()
    assert skewed < 5 < mild, (skewed, mild)
    assert min(len(p) for p in split(Dirichlet(0.1, 20))) >= 20, "min_size holds"


def test_shards_give_few_labels_per_client() -> None:
    # Two shards of a label-sorted set span at most two labels each.
    assert classes_per_client(split(Shards(2))).max() <= 4
    assert classes_per_client(split(IID())).min() >= 8


def test_quantity_skew_sizes_follow_the_profile() -> None:
    sizes = [len(p) for p in split(QuantitySkew("exponential", spread=10.0))]
    assert sizes == sorted(sizes) and 8 <= sizes[-1] / sizes[0] <= 12


def test_impossible_partitions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_size"):
        split(Dirichlet(0.5, 100))
    with pytest.raises(ConfigError, match="shards_per_client"):
        split(Shards(60))
    with pytest.raises(ConfigError, match="num_clients"):
        split(IID(), clients=2000)


def test_a_tiny_alpha_where_no_client_under_the_cap_draws_mass_still_splits() -> None:
    # Dirichlet(0.01), seed 4: for some class every client below the mean size draws zero
    # mass; the shares were 0 / 0 (NaN) and the class's cut points garbage.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = split(Dirichlet(0.01, 1), seed=4)
    everything = torch.cat(parts)
    assert len(everything) == len(LABELS) == len(everything.unique())
    assert min(len(p) for p in parts) >= 1
