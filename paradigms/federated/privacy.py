"""Client-level differential privacy: DP-FedAvg (McMahan et al. 2018, "Learning differentially
private recurrent language models") with fixed or adaptive clipping (Andrew et al. 2021,
"Differentially private learning with adaptive clipping").

Each client's update (parameter and buffer deltas, one vector) is clipped to norm ``C``; the
server adds ``N(0, (z_update * C)^2)`` to the sum and divides by the expected number of
clients that return a round (the fixed-denominator estimator).

Adaptive clipping moves ``C`` towards the ``target_quantile`` of the update norms,
``C <- C exp(-clip_lr (b - target))``, ``b`` the noised share of clients whose norm was within
``C``. As in the paper, each client sends ``b_i - 1/2`` (+-1/2: sensitivity 1/2); the server
noises their sum with ``count_stddev``, divides by the expected number of contributions and
adds 1/2 back. The two Gaussian queries compose to ``z^-2 = z_update^-2 + (2 count_stddev)^-2``,
so ``z_update = (z^-2 - (2 count_stddev)^-2)^-1/2`` keeps the whole mechanism at ``z`` (0/1
bits, sensitivity 1, would leave it at ``(z_update^-2 + count_stddev^-2)^-1/2``: 0.756 for
z = 1). The expected number of contributions is the sampled clients times the chance of
returning, so under client dropout ``b`` still estimates the share of returned norms within
``C`` (the sampled number alone would aim at ``(target - 1/2) / (1 - dropout) + 1/2``).

The privacy spent is opacus' RDP accountant's, one step per round at the sampling rate
(Poisson sampling is assumed, as in the paper; the simulation samples a fixed number).
"""

from __future__ import annotations

import math

import torch

State = dict[str, torch.Tensor]


class ClientDP:
    """Clips every client update and noises their sum; reports epsilon at ``delta``."""

    def __init__(
        self,
        clip: float = 1.0,
        noise_multiplier: float = 1.0,
        delta: float = 1e-5,
        adaptive: bool = False,
        target_quantile: float = 0.5,
        clip_lr: float = 0.2,
        count_stddev: float = 1.0,
    ) -> None:
        self.clip, self.noise_multiplier, self.delta = clip, noise_multiplier, delta
        self.adaptive, self.target_quantile = adaptive, target_quantile
        self.clip_lr, self.count_stddev = clip_lr, count_stddev
        self._accountant = None  # opacus' RDPAccountant, built on first use

    def init_state(self) -> State:
        return {"clip": torch.tensor(float(self.clip))}

    def bound(self, update: torch.Tensor, state: State) -> tuple[torch.Tensor, float]:
        """The update scaled into the ball of radius C, and the client's share of the clipped
        count: +1/2 when its norm was within C, -1/2 when not."""
        norm = update.norm()
        clip = state["clip"]
        return update * torch.clamp(clip / (norm + 1e-12), max=1.0), float(norm <= clip) - 0.5

    @property
    def update_multiplier(self) -> float:
        """The noise multiplier left for the updates once the count has had its share."""
        if not self.adaptive or self.noise_multiplier == 0:
            return self.noise_multiplier
        return (self.noise_multiplier**-2 - (2 * self.count_stddev) ** -2) ** -0.5

    def aggregate(
        self,
        total: torch.Tensor,
        within: float,
        state: State,
        expected: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, State]:
        """The noised mean of the clipped updates (``total`` is their sum) and the next clip.

        Args:
            total: the sum of the clipped updates.
            within: the sum of the clients' count shares (``bound``'s +-1/2).
            state: the current clip.
            expected: the expected number of contributions (the fixed denominator).
            generator: the round's noise stream.
        """
        clip = state["clip"]
        noise = torch.randn(total.shape, generator=generator) * self.update_multiplier * clip
        mean = (total + noise) / expected
        if not self.adaptive:
            return mean, state
        count_stddev = self.count_stddev if self.noise_multiplier > 0 else 0.0
        count = within + float(torch.randn((), generator=generator)) * count_stddev
        share = count / expected + 0.5
        step = -self.clip_lr * (share - self.target_quantile)
        return mean, {"clip": clip * math.exp(step)}

    def epsilon(self, rounds: int, sample_rate: float) -> float:
        """Privacy spent after ``rounds`` rounds, from opacus' RDP accountant. Every round is
        the same mechanism, so the accountant's history is one entry of ``rounds`` steps
        (what ``rounds`` calls of its ``step`` would build), not rebuilt round by round."""
        if self.noise_multiplier == 0:
            return math.inf
        if self._accountant is None:
            from opacus.accountants import RDPAccountant  # the dp extra: only DP runs need it

            self._accountant = RDPAccountant()
        self._accountant.history = [(self.noise_multiplier, sample_rate, rounds)]
        return self._accountant.get_epsilon(self.delta)
