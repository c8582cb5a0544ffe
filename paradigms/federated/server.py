"""The server loop of a federated simulation: sample, train locally, aggregate, checkpoint.

Each client's result is one row of a ``[sampled, width]`` tensor (its delta, its buffers,
SCAFFOLD's variate change, its loss, sample count and whether it returned). Ranks fill the
rows of the clients they train and leave the others zero; one ``all_reduce`` (a sum with
zeros, hence exact) gives every rank the same rows, so every rank aggregates the same way
and 1 or many processes give the same global model. Every random choice comes from a
generator keyed by (seed, round, client, purpose), so it does not depend on which process
trains a client, nor on whether the run was resumed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paradigms.federated.client import (
    FlatModel,
    LocalWork,
    batches_per_epoch,
    evaluate,
    train_locally,
)
from paradigms.federated.strategies import Strategy, Updates

CHECKPOINT = "checkpoints/last_round.pt"
SAMPLE, DROPOUT, STRAGGLER, TRAIN = range(4)


def stream(seed: int, round_: int, client: int, purpose: int) -> torch.Generator:
    """The generator of one random choice, keyed by (seed, round, client, purpose)."""
    key = ((seed * 1_000_003 + round_) * 1_000_003 + client) * 16 + purpose
    return torch.Generator().manual_seed(key % 2**63)


@dataclass
class Plan:
    """The round's settings, as configured."""

    rounds: int
    fraction: float
    local_epochs: int
    local_steps: int | None
    batch_size: int
    dropout: float
    straggler: float
    norm: str  # "average" or "local" (FedBN)
    eval_batch_size: int
    top_k: int


@dataclass
class Federation:
    """The clients' data (in memory for the whole run) and the central test set."""

    clients: list[tuple[torch.Tensor, torch.Tensor]]
    holdouts: list[tuple[torch.Tensor, torch.Tensor]]
    test: tuple[torch.Tensor, torch.Tensor]


class Simulation:
    """Runs the rounds on one process (``rank`` of ``world``); rank 0 evaluates and writes."""

    def __init__(
        self,
        flat: FlatModel,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        federation: Federation,
        plan: Plan,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.flat, self.optimizer, self.strategy = flat, optimizer, strategy
        self.federation, self.plan, self.seed = federation, plan, seed
        self.rank, self.world = rank, world
        self.num_clients = len(federation.clients)
        self.per_round = max(1, round(plan.fraction * self.num_clients))
        self.P, self.B = flat.params.numel(), flat.buffers.numel()
        self.width = self.P + self.B + (self.P if strategy.uses_variates else 0) + 3

    def initial_state(self) -> dict[str, Any]:
        """Round 0: the model's weights (rank 0's, when several processes), fresh state."""
        params, buffers = self.flat.params.clone(), self.flat.buffers.clone()
        if self.world > 1:
            dist.broadcast(params, 0)
            dist.broadcast(buffers, 0)
        local = self.flat.norm_mask.sum().item() + self.B
        return {
            "round": 0,
            "params": params,
            "buffers": buffers,
            "strategy": self.strategy.init_state(params),
            "variates": torch.zeros(self.num_clients, self.P)
            if self.strategy.uses_variates
            else torch.zeros(0),
            "local_norm": torch.zeros(self.num_clients, local),
            "has_local_norm": torch.zeros(self.num_clients, dtype=torch.bool),
        }

    def sample(self, round_: int) -> list[int]:
        order = torch.randperm(self.num_clients, generator=stream(self.seed, round_, -1, SAMPLE))
        return sorted(order[: self.per_round].tolist())

    def _steps(self, client: int, round_: int) -> int:
        n = len(self.federation.clients[client][1])
        full = self.plan.local_steps or self.plan.local_epochs * batches_per_epoch(
            n, self.plan.batch_size
        )
        g = stream(self.seed, round_, client, STRAGGLER)
        if torch.rand((), generator=g) < self.plan.straggler:
            return int(torch.randint(1, full + 1, (), generator=g))
        return full

    def _load(self, state: dict[str, Any], client: int) -> None:
        self.flat.load(state["params"], state["buffers"])
        if self.plan.norm == "local" and state["has_local_norm"][client]:
            stored = state["local_norm"][client]
            self.flat.params[self.flat.norm_mask] = stored[: -self.B or None]
            self.flat.buffers.copy_(stored[len(stored) - self.B :])

    def train_client(self, state: dict[str, Any], client: int, round_: int) -> torch.Tensor:
        """The client's row: delta, buffers, [variate change], loss, samples, returned."""
        row = torch.zeros(self.width)
        if torch.rand((), generator=stream(self.seed, round_, client, DROPOUT)) < self.plan.dropout:
            return row
        x, y = self.federation.clients[client]
        steps = self._steps(client, round_)
        work = LocalWork(
            x, y, steps, self.plan.batch_size, stream(self.seed, round_, client, TRAIN)
        )
        variate = None
        if self.strategy.uses_variates:
            variate = state["strategy"]["c"] - state["variates"][client]
        self._load(state, client)
        loss = train_locally(
            self.flat, self.optimizer, work, self.strategy, state["params"], variate
        )
        delta = self.flat.params - state["params"]
        row[: self.P] = delta
        row[self.P : self.P + self.B] = self.flat.buffers
        if self.strategy.uses_variates:
            lr = self.optimizer.param_groups[0]["lr"]
            # Option II of SCAFFOLD: c_i+ = c_i - c + (x - y_i) / (steps * lr).
            row[self.P + self.B : -3] = -state["strategy"]["c"] - delta / (steps * lr)
        row[-3:] = torch.tensor([loss, len(y), 1.0])
        return row

    def step(self, state: dict[str, Any], round_: int) -> tuple[dict[str, Any], dict[str, float]]:
        """One round; returns the next state and the round's traffic and client numbers."""
        sampled = self.sample(round_)
        rows = torch.zeros(len(sampled), self.width)
        for j, client in enumerate(sampled):
            if j % self.world == self.rank:
                rows[j] = self.train_client(state, client, round_)
        if self.world > 1:
            dist.all_reduce(rows)
        returned = rows[:, -1] == 1
        accepted = returned & torch.isfinite(rows).all(1)
        state = self._aggregate(
            state, rows[accepted], [c for c, a in zip(sampled, accepted.tolist(), strict=True) if a]
        )
        state["round"] = round_ + 1
        variate_bytes = self.P * 4 if self.strategy.uses_variates else 0
        model_bytes = (self.P + self.B) * state["params"].element_size()
        return state, {
            "clients/sampled": len(sampled),
            "clients/returned": int(returned.sum()),
            "clients/rejected": int((returned & ~accepted).sum()),
            "train/client_loss": float(rows[accepted, -3].mean())
            if accepted.any()
            else float("nan"),
            "bytes/down": len(sampled) * (model_bytes + variate_bytes),
            "bytes/up": int(returned.sum()) * (model_bytes + variate_bytes),
        }

    def _aggregate(self, state: dict[str, Any], rows: torch.Tensor, clients: list[int]) -> dict:
        if not clients:
            return dict(state)
        P, B = self.P, self.B
        weights = rows[:, -2]
        variate_deltas = rows[:, P + B : -3] if self.strategy.uses_variates else None
        updates = Updates(rows[:, :P], weights, variate_deltas, self.num_clients)
        old = state["params"]
        params, strategy_state = self.strategy.aggregate(old, updates, state["strategy"])
        state = {**state, "params": params, "strategy": strategy_state}
        share = weights / weights.sum()
        state["buffers"] = share @ rows[:, P : P + B] if B else state["buffers"]
        index = torch.tensor(clients)
        if variate_deltas is not None:
            state["variates"] = state["variates"].index_add(0, index, variate_deltas)
        if self.plan.norm == "local":
            local_params = (old + rows[:, :P])[:, self.flat.norm_mask]
            state["local_norm"] = state["local_norm"].index_copy(
                0, index, torch.cat([local_params, rows[:, P : P + B]], 1)
            )
            state["has_local_norm"] = state["has_local_norm"].index_fill(0, index, True)
        return state

    def evaluate(self, state: dict[str, Any]) -> dict[str, float]:
        """The global model on the central test set (and each client's holdout, if any)."""
        self.flat.load(state["params"], state["buffers"])
        args = (self.plan.eval_batch_size, self.plan.top_k)
        metrics = {
            f"test/{k}": v
            for k, v in evaluate(self.flat.model, *self.federation.test, *args).items()
        }
        holdout = [
            evaluate(self.flat.model, x, y, *args)["acc"] for x, y in self.federation.holdouts
        ]
        if holdout:
            metrics["fed/mean_acc"] = sum(holdout) / len(holdout)
            metrics["fed/worst_acc"] = min(holdout)
        return metrics

    def run(self, state: dict[str, Any], on_round: Any) -> dict[str, Any]:
        """Rounds from ``state['round']`` to the plan's; ``on_round(state, metrics)`` after each
        (rank 0 only): it records the metrics, then the checkpoint."""
        for round_ in range(state["round"], self.plan.rounds):
            started = time.perf_counter()
            state, metrics = self.step(state, round_)
            if self.rank == 0:
                metrics = {"round": round_ + 1, **self.evaluate(state), **metrics}
                metrics["time/round_s"] = time.perf_counter() - started
                on_round(state, metrics)
        return state


def save_checkpoint(state: dict[str, Any], run_dir: Path) -> None:
    """Writes the state atomically: a kill leaves the previous round's checkpoint intact."""
    path = run_dir / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT
    return torch.load(path, weights_only=True) if path.is_file() else None
