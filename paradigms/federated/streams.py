"""Keyed random streams: every random choice of a simulation has its own generator, so it does
not depend on which process makes it, nor on whether the run was resumed."""

from __future__ import annotations

import torch

SAMPLE, CLIENT_DROPOUT, STRAGGLER, TRAIN, NOISE, MASK, ATTACK, COMPRESS, DOWNLOAD = range(9)


def stream(seed: int, round_: int, client: int, purpose: int) -> torch.Generator:
    """The generator of one random choice, keyed by (seed, round, client, purpose)."""
    key = ((seed * 1_000_003 + round_) * 1_000_003 + client) * 16 + purpose
    return torch.Generator().manual_seed(key % 2**63)
