"""How a multi-task run turns T task losses into one update.

A ``Weighting`` either weighs the losses (``manual = False``: Lightning's automatic
optimization backpropagates one combined loss) or combines per-task gradients of the shared
parameters (``manual = True``: the module computes one gradient per task, averaged over DDP
ranks, and asks ``combine`` for the update). Each method overrides one hook of the base:
``weights`` (equal, static, dwa), ``loss`` (uncertainty) or ``combine`` (gradnorm, pcgrad,
cagrad). Gradient-based methods apply the task-weighted sum to the heads.

Papers: Kendall et al. 2018 (uncertainty), Liu et al. 2019 (DWA, from MTAN), Chen et al. 2018
(GradNorm), Yu et al. 2020 (PCGrad), Liu et al. 2021 (CAGrad).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn


class Weighting(nn.Module):
    """Equal weights: the plain sum of task losses. Cost: none beyond one backward pass.

    ``history`` passed to the hooks holds the mean training loss of each task over the last
    completed epochs (rows oldest first, at most two); ``step`` is the optimizer step.
    """

    manual: ClassVar[bool] = False
    # The entries of a per-task gradient row on the last shared layer (set by the module).
    layer: slice = slice(None)

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.register_buffer("static", torch.tensor(weights, dtype=torch.float32))

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        """The current weight of each task."""
        return torch.ones_like(self.static)

    def loss(self, losses: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """The combined loss that automatic optimization backpropagates."""
        return (self.weights(history) * losses).sum()

    def combine(
        self, grads: torch.Tensor, losses: torch.Tensor, history: torch.Tensor, step: int
    ) -> torch.Tensor:
        """The shared parameters' update direction from per-task gradients ``grads`` (T x P)."""
        return self.weights(history) @ grads


class Equal(Weighting):
    """Every task weighs 1. Cost: none."""


class Static(Weighting):
    """Each task weighs its configured ``weight``. Cost: none."""

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        return self.static


class DWA(Weighting):
    """Dynamic weight average: a task whose loss fell slowly over the last epoch weighs more,
    ``w = T * softmax((L(e-1) / L(e-2)) / temperature)``; equal weights for the first two
    epochs. Cost: none (epoch means of the losses the run computes anyway)."""

    def __init__(self, weights: list[float], temperature: float = 2.0) -> None:
        super().__init__(weights)
        self.temperature = temperature

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        if len(history) < 2:
            return torch.ones_like(self.static)
        rate = history[-1] / history[-2].clamp_min(1e-12)
        return len(self.static) * torch.softmax(rate / self.temperature, dim=0)


class Uncertainty(Weighting):
    """Homoscedastic uncertainty: learns ``s = log sigma^2`` per task and minimises
    ``sum(0.5 exp(-s) L + 0.5 s)``. Cost: T extra parameters, nothing per step."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__(weights)
        self.log_vars = nn.Parameter(torch.zeros(len(weights)))

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.exp(-self.log_vars)

    def loss(self, losses: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return (self.weights(history) * losses + 0.5 * self.log_vars).sum()


class GradNorm(Weighting):
    """GradNorm: weights move so that each task's weighted gradient norm ``G_i = w_i |g_i|``
    tracks the mean norm times its relative inverse training rate
    ``r_i = (L_i/L0_i) / mean(L/L0)``; after each step they are renormalised to sum to T.

    ``update="paper"`` (Chen et al. 2018): ``g_i`` is the gradient on the last shared layer
    (``layer``, set by the module), and the weights take a gradient step of size ``lr`` on the
    GradNorm loss ``L_grad = sum_i |G_i - mean(G) r_i^alpha|`` with the target held constant:
    ``dL_grad/dw_i = sign(G_i - target_i) |g_i|``. ``update="sign"`` (the default, this
    tool's first version): ``g_i`` over all shared parameters, and the step is that gradient
    divided by ``mean|g|``, so ``lr`` means the same on any backbone. Cost: T backward passes
    per step and T x P gradient memory."""

    manual: ClassVar[bool] = True

    def __init__(
        self, weights: list[float], alpha: float = 1.5, lr: float = 0.025, update: str = "sign"
    ) -> None:
        super().__init__(weights)
        self.alpha = alpha
        self.lr = lr
        self.update = update
        self.register_buffer("current", torch.ones(len(weights)))
        self.register_buffer("initial_losses", torch.zeros(len(weights)))

    def weights(self, history: torch.Tensor) -> torch.Tensor:
        return self.current

    def combine(
        self, grads: torch.Tensor, losses: torch.Tensor, history: torch.Tensor, step: int
    ) -> torch.Tensor:
        update = self.current @ grads
        # L0 of a task is its first loss from a batch with its labels (a batch without any
        # gives an exact zero); until then its training rate counts as the mean's.
        fresh = (self.initial_losses == 0) & (losses > 0)
        self.initial_losses.copy_(torch.where(fresh, losses, self.initial_losses))
        known = self.initial_losses > 0
        paper = self.update == "paper"
        norms = (grads[:, self.layer] if paper else grads).norm(dim=1)
        ratio = torch.where(known, losses / self.initial_losses.clamp_min(1e-12), 1.0)
        target = (self.current * norms).mean() * (ratio / ratio.mean()) ** self.alpha
        slope = torch.sign(self.current * norms - target) * norms
        if not paper:
            slope = slope / norms.mean().clamp_min(1e-12)
        moved = (self.current - self.lr * slope).clamp_min(1e-3)
        self.current.copy_(moved * len(moved) / moved.sum())
        return update


class PCGrad(Weighting):
    """Projecting conflicting gradients: each task gradient loses its component along every
    other task gradient it conflicts with (negative dot product), in a random order seeded by
    the step (the same on every rank); the projected gradients are summed. Cost: T backward
    passes per step, T x P gradient memory, O(T^2 P) projections."""

    manual: ClassVar[bool] = True

    def combine(
        self, grads: torch.Tensor, losses: torch.Tensor, history: torch.Tensor, step: int
    ) -> torch.Tensor:
        return project_conflicts(grads, torch.Generator().manual_seed(step)).sum(0)


def project_conflicts(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad's projection of each row of ``grads`` (T x P) onto the normal planes of the rows
    it conflicts with."""
    projected = grads.clone()
    squared = grads.pow(2).sum(1).clamp_min(1e-20)
    for i in range(len(grads)):
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j != i:
                dot = projected[i] @ grads[j]
                projected[i] -= dot.clamp(max=0.0) / squared[j] * grads[j]
    return projected


class CAGrad(Weighting):
    """Conflict-averse gradient descent: the update maximises the worst task's improvement
    within a ball of radius ``c * |g0|`` around the average gradient g0 (the dual is a
    T-dimensional problem solved with scipy's SLSQP); scaled by T to match the sum of losses.
    Cost: T backward passes per step, T x P gradient memory, a small CPU solve per step."""

    manual: ClassVar[bool] = True

    def __init__(self, weights: list[float], c: float = 0.4, rescale: bool = True) -> None:
        super().__init__(weights)
        self.c = c
        self.rescale = rescale

    def combine(
        self, grads: torch.Tensor, losses: torch.Tensor, history: torch.Tensor, step: int
    ) -> torch.Tensor:
        count = len(grads)
        gram = (grads @ grads.T).double().cpu().numpy()
        radius = self.c * math.sqrt(gram.mean() + 1e-8)
        start = np.full(count, 1.0 / count)

        def objective(w: np.ndarray) -> float:
            return float(w @ gram @ start + radius * math.sqrt(w @ gram @ w + 1e-8))

        solved = minimize(
            objective,
            start,
            bounds=[(0.0, 1.0)] * count,
            constraints={"type": "eq", "fun": lambda w: 1.0 - w.sum()},
        )
        mix = torch.as_tensor(solved.x, dtype=grads.dtype, device=grads.device) @ grads
        update = grads.mean(0) + radius / (mix.norm() + 1e-8) * mix
        return count * update / (1.0 + self.c**2 if self.rescale else 1.0)
