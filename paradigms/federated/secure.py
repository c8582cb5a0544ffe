"""Secure aggregation, simulated (Bonawitz et al. 2017, "Practical secure aggregation for
privacy-preserving machine learning"): each pair of sampled clients shares a seed; client i
adds the pair's mask when i < j and subtracts it when i > j, so the masks cancel in the sum and
the server, which only ever handles masked vectors, still gets the exact sum.

Values are encoded in fixed point (int64, ``2^bits`` steps per unit) and masks are uniform
int64: sums wrap around modulo 2^64, so they are exact and a masked vector is uniform noise.
When clients drop out, the survivors reveal the seeds they shared with the dropped ones; the
server regenerates those masks and removes them, and the round completes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PairStream = Callable[[int, int], torch.Generator]  # (i, j), i < j -> the pair's generator


class SecureAggregation:
    """Pairwise additive masking of fixed-point client vectors."""

    def __init__(self, bits: int = 24) -> None:
        self.scale = 2.0**bits

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x.double() * self.scale).to(torch.int64)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() / self.scale).float()

    @staticmethod
    def pair_mask(width: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(-(2**63), 2**63 - 1, (width,), dtype=torch.int64, generator=generator)

    def _share(self, i: int, j: int, width: int, pair: PairStream) -> torch.Tensor:
        """Client i's share of the (i, j) mask: + when i < j, - when i > j."""
        mask = self.pair_mask(width, pair(min(i, j), max(i, j)))
        return mask if i < j else -mask

    def mask(self, x: torch.Tensor, client: int, sampled: list[int], pair: PairStream):
        """What ``client`` sends: its encoded vector plus its shares of every pair's mask."""
        masked = self.encode(x)
        for other in sampled:
            if other != client:
                masked += self._share(client, other, len(masked), pair)
        return masked

    def unmask(
        self, total: torch.Tensor, survivors: list[int], dropped: list[int], pair: PairStream
    ) -> torch.Tensor:
        """The decoded sum of the survivors' vectors from the sum of their masked vectors."""
        total = total.clone()
        for i in survivors:
            for d in dropped:
                total -= self._share(i, d, len(total), pair)
        return self.decode(total)
