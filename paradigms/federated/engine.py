"""The engine: the one piece that trains the clients a rank was given in a round.

It takes each client's start weights (the global model, with FedBN's own norm layers where a
client has them), its ``LocalWork`` and the global weights, and returns the trained rows; the
server does everything around it (sampling, attacks, clipping, aggregation). ``LoopEngine``
trains the clients one after another on one reused model; ``VmapEngine`` (``vmap_engine.py``,
``paradigm.engine=vmap``) trains a group of them at once with torch.func under the same
``train``. ``Simulation.build_engine`` chooses.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from paradigms.federated.client import FlatModel, LocalWork, train_locally
from paradigms.federated.strategies import Strategy


@dataclass
class Trained:
    """What a group of clients ends with, one row per client in the order given."""

    params: torch.Tensor  # [K, P]
    buffers: torch.Tensor  # [K, B]
    losses: torch.Tensor  # [K]: mean training loss over the samples seen


class LoopEngine:
    """Clients one after another on ``flat``'s model, under ``autocast`` (mixed precision)."""

    def __init__(
        self,
        flat: FlatModel,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self.flat, self.optimizer, self.strategy, self.autocast = (
            flat,
            optimizer,
            strategy,
            autocast,
        )

    def train(
        self,
        params: torch.Tensor,
        buffers: torch.Tensor,
        works: list[LocalWork],
        global_params: torch.Tensor,
        variates: torch.Tensor | None = None,
    ) -> Trained:
        """Trains client k from row k of ``params`` [K, P] and ``buffers`` [K, B] for
        ``works[k].steps`` steps; ``variates`` [K, P] is SCAFFOLD's c - c_i per client."""
        out_params, out_buffers = torch.empty_like(params), torch.empty_like(buffers)
        losses = torch.zeros(len(works), device=params.device)
        for k, work in enumerate(works):
            self.flat.load(params[k], buffers[k])
            variate = variates[k] if variates is not None else None
            losses[k] = train_locally(
                self.flat,
                self.optimizer,
                work,
                self.strategy,
                global_params,
                variate,
                self.autocast,
            )
            out_params[k], out_buffers[k] = self.flat.params, self.flat.buffers
        return Trained(out_params, out_buffers, losses)
