"""Federated partitioners: how a training set is split over simulated clients.

- ``IID``: a seeded shuffle cut into near-equal parts (the i.i.d. reference).
- ``Dirichlet``: each class spread over clients by proportions drawn from Dir(alpha) (Hsu et
  al. 2019, "Measuring the effects of non-identical data distribution"); small alpha gives
  clients few dominant classes. Redrawn until every client holds ``min_size`` samples.
- ``Shards``: McMahan et al. 2017 (FedAvg paper): sort by label, cut into
  ``num_clients * shards_per_client`` shards, deal each client ``shards_per_client``.
- ``QuantitySkew``: labels i.i.d., but client sizes follow a linear, exponential or
  log-normal profile (Li et al. 2022, "Federated learning on non-IID data silos").
- ``ByColumn``: the natural partition of LEAF-style data (Caldas et al. 2018): one client per
  value of a column of the training data (a CSV's or a dataset's, e.g. the writer of FEMNIST).

Every partitioner draws from the ``torch.Generator`` it is given, so a seed fixes the split.
"""

from __future__ import annotations

import numpy as np
import torch

from paradigms.runner.errors import ConfigError

MAX_DRAWS = 1000


class Partitioner:
    """Owns the checks and the output format; a variant overrides ``assign``."""

    key = "paradigm.partition"

    def __call__(
        self,
        labels: torch.Tensor,
        num_clients: int,
        generator: torch.Generator,
        columns: dict[str, np.ndarray] | None = None,
    ) -> list[torch.Tensor]:
        """Sorted, disjoint, non-empty index tensors, one per client (``columns``: the
        training data's other columns, for a partition that groups by one)."""
        if num_clients > len(labels):
            raise ConfigError(
                "paradigm.num_clients",
                num_clients,
                f"more clients than the {len(labels)} training samples",
                f"use at most {len(labels)} clients",
            )
        parts = self.assign(labels, num_clients, generator)
        if any(len(p) == 0 for p in parts):
            raise ConfigError(self.key, type(self).__name__, "left a client empty", self.fix)
        return [torch.sort(torch.as_tensor(p, dtype=torch.long)).values for p in parts]

    fix = "use fewer clients"

    def assign(
        self, labels: torch.Tensor, num_clients: int, generator: torch.Generator
    ) -> list[torch.Tensor]:
        raise NotImplementedError


class IID(Partitioner):
    """A seeded shuffle cut into near-equal parts."""

    def assign(self, labels, num_clients, generator):
        return list(torch.randperm(len(labels), generator=generator).tensor_split(num_clients))


class Dirichlet(Partitioner):
    """Label skew: class c goes to clients in proportions p_c ~ Dir(alpha)."""

    fix = "raise paradigm.partition.alpha, lower paradigm.partition.min_size or use fewer clients"

    def __init__(self, alpha: float = 0.5, min_size: int = 10) -> None:
        self.alpha = alpha
        self.min_size = min_size

    def assign(self, labels, num_clients, generator):
        if self.min_size * num_clients > len(labels):
            raise ConfigError(
                "paradigm.partition.min_size",
                self.min_size,
                "cannot hold for every client",
                self.fix,
            )
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        y = labels.numpy()
        cap = len(y) / num_clients
        for _ in range(MAX_DRAWS):
            parts: list[list[int]] = [[] for _ in range(num_clients)]
            for c in np.unique(y):
                members = rng.permutation(np.flatnonzero(y == c))
                drawn = rng.dirichlet(np.full(num_clients, self.alpha))
                # A client already above the mean size takes no more (keeps sizes balanced),
                # unless no client under it drew any mass (small alpha): then the draw stands.
                share = drawn * np.array([len(p) < cap for p in parts])
                share = share if share.sum() > 0 else drawn
                cuts = (np.cumsum(share / share.sum()) * len(members)).astype(int)[:-1]
                for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                    part.extend(chunk.tolist())
            if min(len(p) for p in parts) >= self.min_size:
                return [torch.tensor(p, dtype=torch.long) for p in parts]
        raise ConfigError("paradigm.partition.alpha", self.alpha, "no draw met min_size", self.fix)


class Shards(Partitioner):
    """Pathological label skew: sorted by label, each client gets k contiguous shards."""

    fix = "lower paradigm.partition.shards_per_client or use fewer clients"

    def __init__(self, shards_per_client: int = 2) -> None:
        self.shards_per_client = shards_per_client

    def assign(self, labels, num_clients, generator):
        count = num_clients * self.shards_per_client
        if count > len(labels):
            raise ConfigError(
                "paradigm.partition.shards_per_client",
                self.shards_per_client,
                f"{count} shards for {len(labels)} samples",
                self.fix,
            )
        order = torch.sort(labels, stable=True).indices
        shards = order.tensor_split(count)
        deal = torch.randperm(count, generator=generator).view(num_clients, -1)
        return [torch.cat([shards[s] for s in row.tolist()]) for row in deal]


class QuantitySkew(Partitioner):
    """Quantity skew: client i's share of a shuffle grows with i (linear / exponential, the
    largest ``spread`` times the smallest) or is log-normal with std ``sigma``."""

    fix = "lower paradigm.partition.spread or sigma, or use fewer clients"

    def __init__(self, profile: str = "exponential", spread: float = 10.0, sigma: float = 1.0):
        self.profile = profile
        self.spread = spread
        self.sigma = sigma

    def weights(self, num_clients: int, generator: torch.Generator) -> torch.Tensor:
        """Relative client sizes."""
        steps = torch.linspace(0, 1, num_clients, dtype=torch.float64)
        if self.profile == "linear":
            return 1 + (self.spread - 1) * steps
        if self.profile == "exponential":
            return self.spread**steps
        normal = torch.randn(num_clients, generator=generator, dtype=torch.float64)
        return torch.exp(self.sigma * normal)

    def assign(self, labels, num_clients, generator):
        weights = self.weights(num_clients, generator)
        sizes = (weights / weights.sum() * len(labels)).floor().long().clamp(min=1)
        sizes[sizes.argmax()] += len(labels) - sizes.sum()
        order = torch.randperm(len(labels), generator=generator)
        return list(order.split(sizes.tolist()))


class ByColumn(Partitioner):
    """One client per value of ``column`` (``paradigm.num_clients`` is not used: the data
    says how many clients there are), in sorted order of the values."""

    key = "paradigm.partition.column"

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, labels, num_clients, generator, columns=None):
        columns = columns or {}
        if self.column not in columns:
            raise ConfigError(
                self.key,
                self.column,
                "the training data has no such column",
                f"use one of {sorted(columns)}" if columns else "give data=csv (or hf) with it",
            )
        values = columns[self.column]
        kinds = np.unique(values)
        if len(kinds) < 2:
            raise ConfigError(
                self.key,
                self.column,
                f"holds one value ({kinds[0]!r}): one client is not a federation",
                "partition by a column with a value per client (e.g. the writer)",
            )
        return [torch.from_numpy(np.flatnonzero(values == kind)) for kind in kinds]
