"""The server loop of a federated simulation: sample, train locally, aggregate, checkpoint.

Each client's result is one row of a ``[sampled, width]`` tensor (its delta, its buffers,
SCAFFOLD's variate change, its loss, sample count, whether it was within the DP clip and
whether it returned). Ranks fill the
rows of the clients they train and leave the others zero; one ``all_reduce`` (a sum with
zeros, hence exact) gives every rank the same rows, so every rank aggregates the same way
and 1 or many processes give the same global model. Every random choice comes from a
generator keyed by (seed, round, client, purpose), so it does not depend on which process
trains a client, nor on whether the run was resumed.

The update path has three optional pieces, each a hook: an ``Attack`` poisons a malicious
client's labels or update; under client-level DP (``ClientDP``) or secure aggregation
(``SecureAggregation``) a client sends only its weighted row, clipped and/or masked, and the
server sees nothing but the sum (``_aggregate_sum``), which it noises under DP.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paradigms.federated.attacks import Attack
from paradigms.federated.client import (
    FlatModel,
    LocalWork,
    batches_per_epoch,
    evaluate,
    train_locally,
)
from paradigms.federated.privacy import ClientDP
from paradigms.federated.secure import SecureAggregation
from paradigms.federated.strategies import Strategy, Updates
from paradigms.federated.streams import (
    ATTACK,
    CLIENT_DROPOUT,
    MASK,
    NOISE,
    SAMPLE,
    STRAGGLER,
    TRAIN,
    stream,
)

CHECKPOINT = "checkpoints/last_round.pt"
LOSS, SAMPLES, WITHIN, FLAG = range(-4, 0)  # a row's last columns; FLAG: 1 sent, -1 rejected
VARIANCE_FLOOR = 1e-5  # DP noise may push a BatchNorm running variance below zero


@dataclass
class SimulationSettings:
    """The simulation's settings, as configured: rounds, sampling, local work, failures."""

    rounds: int
    fraction: float
    local_epochs: int
    local_steps: int | None
    batch_size: int
    client_dropout: float  # probability that a sampled client does not return
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
        settings: SimulationSettings,
        seed: int,
        rank: int = 0,
        world: int = 1,
        attack: Attack | None = None,
        privacy: ClientDP | None = None,
        secure: SecureAggregation | None = None,
    ) -> None:
        self.flat, self.optimizer, self.strategy = flat, optimizer, strategy
        self.federation, self.settings, self.seed = federation, settings, seed
        self.rank, self.world = rank, world
        self.attack, self.privacy, self.secure = attack or Attack(), privacy, secure
        self.num_clients = len(federation.clients)
        self.per_round = max(1, round(settings.fraction * self.num_clients))
        self.malicious = self.attack.choose(self.num_clients, stream(seed, -1, -1, ATTACK))
        # Only the sum of the clients' rows reaches the strategy (sum-based strategies only).
        self.summed = privacy is not None or secure is not None
        self.P, self.B = flat.params.numel(), flat.buffers.numel()
        self.width = self.P + self.B + (self.P if strategy.uses_variates else 0) + 4

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
            "privacy": self.privacy.init_state() if self.privacy else {},
        }

    def sample(self, round_: int) -> list[int]:
        order = torch.randperm(self.num_clients, generator=stream(self.seed, round_, -1, SAMPLE))
        return sorted(order[: self.per_round].tolist())

    def _steps(self, client: int, round_: int) -> int:
        n = len(self.federation.clients[client][1])
        full = self.settings.local_steps or self.settings.local_epochs * batches_per_epoch(
            n, self.settings.batch_size
        )
        g = stream(self.seed, round_, client, STRAGGLER)
        if torch.rand((), generator=g) < self.settings.straggler:
            return int(torch.randint(1, full + 1, (), generator=g))
        return full

    def _load(self, state: dict[str, Any], client: int) -> None:
        self.flat.load(state["params"], state["buffers"])
        if self.settings.norm == "local" and state["has_local_norm"][client]:
            stored = state["local_norm"][client]
            self.flat.params[self.flat.norm_mask] = stored[: -self.B or None]
            self.flat.buffers.copy_(stored[len(stored) - self.B :])

    def train_client(
        self, state: dict[str, Any], client: int, round_: int, sampled: list[int]
    ) -> torch.Tensor:
        """The client's row: delta, buffers, [variate change], loss, samples, within, flag."""
        row = torch.zeros(self.width)
        dropout = stream(self.seed, round_, client, CLIENT_DROPOUT)
        if torch.rand((), generator=dropout) < self.settings.client_dropout:
            return row
        x, y = self.federation.clients[client]
        if client in self.malicious:
            y = self.attack.data(y, self.flat.model.num_classes)
        steps = self._steps(client, round_)
        work = LocalWork(
            x, y, steps, self.settings.batch_size, stream(self.seed, round_, client, TRAIN)
        )
        variate = None
        if self.strategy.uses_variates:
            variate = state["strategy"]["c"] - state["variates"][client]
        self._load(state, client)
        loss = train_locally(
            self.flat, self.optimizer, work, self.strategy, state["params"], variate
        )
        delta = self.flat.params - state["params"]
        if client in self.malicious:
            delta = self.attack.update(delta, stream(self.seed, round_, client, ATTACK))
        row[: self.P] = delta
        row[self.P : self.P + self.B] = self.flat.buffers
        if self.strategy.uses_variates:
            group = self.optimizer.param_groups[0]
            row[self.P + self.B : LOSS] = self.strategy.variate_change(
                delta, state["strategy"]["c"], steps, group["lr"], group.get("momentum", 0.0)
            )
        row[LOSS:] = torch.tensor([loss, len(y), 1.0, 1.0])
        return self.protect(row, state, client, sampled, round_) if self.summed else row

    def protect(
        self, row: torch.Tensor, state: dict[str, Any], client: int, sampled: list[int], round_: int
    ) -> torch.Tensor:
        """What a client sends when only sums reach the server: its weighted update (buffers as
        deltas too) with its loss, weight and within-clip bit, clipped under DP (where every
        client weighs 1), masked under secure aggregation. A non-finite row is flagged -1."""
        P, B = self.P, self.B
        update = torch.cat([row[:P], row[P : P + B] - state["buffers"]])
        within, weight = 1.0, 1.0 if self.privacy else float(row[SAMPLES])
        if self.privacy:
            update, within = self.privacy.bound(update, state["privacy"])
        sent = torch.cat([weight * update, torch.tensor([weight * row[LOSS], weight, within])])
        if not torch.isfinite(sent).all():
            return torch.cat([torch.zeros_like(sent), torch.tensor([-1.0])])
        if self.secure:
            masked = self.secure.mask(sent, client, sampled, self._pairs(round_))
            return torch.cat([masked, torch.tensor([1], dtype=torch.int64)])
        return torch.cat([sent, torch.tensor([1.0])])

    def _pairs(self, round_: int):
        """The seed shared by clients i < j in this round, as a generator."""
        return lambda i, j: stream(self.seed, round_, i * self.num_clients + j, MASK)

    def step(self, state: dict[str, Any], round_: int) -> tuple[dict[str, Any], dict[str, float]]:
        """One round; returns the next state and the round's traffic and client numbers."""
        sampled = self.sample(round_)
        rows = torch.zeros(len(sampled), self.width, dtype=torch.int64 if self.secure else None)
        for j, client in enumerate(sampled):
            if j % self.world == self.rank:
                rows[j] = self.train_client(state, client, round_, sampled)
        if self.world > 1:
            dist.all_reduce(rows)
        returned = rows[:, FLAG] != 0
        accepted = (rows[:, FLAG] == 1) & torch.isfinite(rows).all(1)
        clients = [c for c, a in zip(sampled, accepted.tolist(), strict=True) if a]
        if self.summed:
            state, loss = self._aggregate_sum(state, rows[accepted], clients, sampled, round_)
        else:
            state = self._aggregate(state, rows[accepted], clients)
            loss = float(rows[accepted, LOSS].mean()) if clients else float("nan")
        state["round"] = round_ + 1
        variate_bytes = self.P * 4 if self.strategy.uses_variates else 0
        model_bytes = (self.P + self.B) * state["params"].element_size()
        up_bytes = (self.width - 1) * 8 if self.secure else model_bytes + variate_bytes
        metrics = {
            "clients/sampled": len(sampled),
            "clients/returned": int(returned.sum()),
            "clients/rejected": int((returned & ~accepted).sum()),
            "train/client_loss": loss,
            "bytes/down": len(sampled) * (model_bytes + variate_bytes),
            "bytes/up": int(returned.sum()) * up_bytes,
        }
        if self.malicious:
            metrics["clients/malicious"] = len(set(sampled) & set(self.malicious))
        if self.privacy:
            rate = self.per_round / self.num_clients
            metrics["privacy/epsilon"] = self.privacy.epsilon(round_ + 1, rate)
            metrics["privacy/clip"] = float(state["privacy"]["clip"])
        return state, metrics

    def _aggregate_sum(
        self,
        state: dict[str, Any],
        rows: torch.Tensor,
        clients: list[int],
        sampled: list[int],
        round_: int,
    ) -> tuple[dict[str, Any], float]:
        """The next state from the sum of the rows alone (unmasked, noised under DP), and the
        clients' mean loss."""
        if not clients:
            return dict(state), float("nan")
        total = rows[:, :FLAG].sum(0)
        if self.secure:
            dropped = [c for c in sampled if c not in clients]
            total = self.secure.unmask(total, clients, dropped, self._pairs(round_))
        update, (loss, weight, within) = total[:-3], total[-3:].tolist()  # FLAG dropped
        privacy = state["privacy"]
        if self.privacy:
            noise = stream(self.seed, round_, -1, NOISE)
            expected = self.per_round * (1 - self.settings.client_dropout)  # who returns
            mean, privacy = self.privacy.aggregate(update, within, privacy, expected, noise)
        else:
            mean = update / weight
        params, strategy_state = self.strategy.aggregate(
            state["params"], Updates(mean[None, : self.P], torch.ones(1)), state["strategy"]
        )
        buffers = state["buffers"] + mean[self.P :]
        if self.privacy:  # post-processing: the privacy guarantee is kept
            floor = buffers.clamp(min=VARIANCE_FLOOR)
            buffers = torch.where(self.flat.variance_mask, floor, buffers)
        state = {**state, "params": params, "strategy": strategy_state}
        return {**state, "buffers": buffers, "privacy": privacy}, loss / weight

    def _aggregate(self, state: dict[str, Any], rows: torch.Tensor, clients: list[int]) -> dict:
        if not clients:
            return dict(state)
        P, B = self.P, self.B
        weights = rows[:, SAMPLES]
        variate_deltas = rows[:, P + B : LOSS] if self.strategy.uses_variates else None
        updates = Updates(rows[:, :P], weights, variate_deltas, self.num_clients)
        old = state["params"]
        params, strategy_state = self.strategy.aggregate(old, updates, state["strategy"])
        state = {**state, "params": params, "strategy": strategy_state}
        if B:
            state["buffers"] = self.strategy.combine_buffers(rows[:, P : P + B], weights)
        index = torch.tensor(clients)
        if variate_deltas is not None:
            state["variates"] = state["variates"].index_add(0, index, variate_deltas)
        if self.settings.norm == "local":
            local_params = (old + rows[:, :P])[:, self.flat.norm_mask]
            state["local_norm"] = state["local_norm"].index_copy(
                0, index, torch.cat([local_params, rows[:, P : P + B]], 1)
            )
            state["has_local_norm"] = state["has_local_norm"].index_fill(0, index, True)
        return state

    def evaluate(self, state: dict[str, Any]) -> dict[str, float]:
        """The global model on the central test set (and each client's holdout, if any)."""
        self.flat.load(state["params"], state["buffers"])
        args = (self.settings.eval_batch_size, self.settings.top_k)
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
        """Rounds from ``state['round']`` to the settings'; ``on_round(state, metrics)`` after each
        (rank 0 only): it records the metrics, then the checkpoint."""
        for round_ in range(state["round"], self.settings.rounds):
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
