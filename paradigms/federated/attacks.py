"""Malicious clients: a seeded ``fraction`` of the federation, fixed for the run, that poison
their data or their update before sending it.

- sign flip: sends ``-scale * delta`` (Blanchard et al. 2017's omniscient-free variant);
- scaled: sends ``scale * delta`` (the boosting of Bhagoji et al. 2019);
- gaussian: sends pure noise ``N(0, std^2)`` instead of an update;
- label flip: trains honestly on labels mapped ``y -> C - 1 - y`` (Fang et al. 2020).

The base class is the honest client (``fraction=0``).
"""

from __future__ import annotations

import torch


class Attack:
    """No attack: hooks that return what they are given."""

    def __init__(self, fraction: float = 0.0) -> None:
        self.fraction = fraction

    def choose(self, num_clients: int, generator: torch.Generator) -> list[int]:
        """The malicious clients, drawn once for the run."""
        count = round(self.fraction * num_clients)
        return sorted(torch.randperm(num_clients, generator=generator)[:count].tolist())

    def data(self, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The labels a malicious client trains on."""
        return y

    def update(self, delta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What a malicious client sends instead of its honest ``delta``."""
        return delta


class SignFlip(Attack):
    """Sends the honest update reversed and scaled: ``-scale * delta``."""

    def __init__(self, fraction: float = 0.2, scale: float = 4.0) -> None:
        super().__init__(fraction)
        self.scale = scale

    def update(self, delta, generator):
        return -self.scale * delta


class Scaled(Attack):
    """Sends the honest update boosted: ``scale * delta``."""

    def __init__(self, fraction: float = 0.2, scale: float = 10.0) -> None:
        super().__init__(fraction)
        self.scale = scale

    def update(self, delta, generator):
        return self.scale * delta


class Gaussian(Attack):
    """Sends Gaussian noise of standard deviation ``std`` per coordinate."""

    def __init__(self, fraction: float = 0.2, std: float = 0.1) -> None:
        super().__init__(fraction)
        self.std = std

    def update(self, delta, generator):
        return self.std * torch.randn(delta.shape, generator=generator)


class LabelFlip(Attack):
    """Trains on labels ``C - 1 - y``: an honest-looking update towards the wrong classes."""

    def data(self, y, num_classes):
        return num_classes - 1 - y
