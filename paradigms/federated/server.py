"""The server loop of a federated simulation: sample, train locally, aggregate, checkpoint.

Each client's result is one row (its delta, its buffers, SCAFFOLD's variate change, its
loss x samples, its samples, its weight, whether it was within the DP clip, whether it
returned). Clients go to ranks by expected work (``processes.assign``); the engine trains a
rank's clients. Where the strategy needs nothing but a weighted sum (the FedAvg family without
per-client state, and always under DP or secure aggregation) a client's row is weighted and
each rank sends the sum of its rows: O(model) traffic per round. Where it needs every update
(median, trimmed mean, Krum) or per-client state comes back (SCAFFOLD's variates, FedBN's
norm layers), ranks fill the rows of their clients and leave the others zero; one sum gives
every rank all the rows (a sum with zeros, hence exact). Every random choice comes from a
generator keyed by (seed, round, client, purpose), so it does not depend on which process
trains a client, nor on whether the run was resumed.

The update path has four optional pieces, each a hook: an ``Attack`` poisons a malicious
client's labels or update; a ``Compression`` codec encodes what the client uploads (the row
holds what the server decodes of it); under client-level DP (``ClientDP``) or secure
aggregation (``SecureAggregation``) a client sends only its weighted row, clipped and/or
masked, and the server sees nothing but the sum (``_aggregate_sum``), which it noises under DP.

Under error feedback (top_k) each client's residual is server state, so that it is
checkpointed and the same on every rank: the ranks fill the residuals of their accepted
clients and one sum (with zeros, exact) gives every rank all of them (``_keep_residuals``).

The server's state lives on the CPU (the DP noise and the masks are drawn there); the engine
trains on the Fabric device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from paradigms.federated.attacks import Attack
from paradigms.federated.client import FlatModel, LocalWork, batches_per_epoch, evaluate
from paradigms.federated.compression import Compression
from paradigms.federated.data import Reader
from paradigms.federated.engine import LoopEngine
from paradigms.federated.privacy import ClientDP
from paradigms.federated.processes import assign
from paradigms.federated.secure import SecureAggregation
from paradigms.federated.strategies import Strategy, Updates
from paradigms.federated.streams import (
    ATTACK,
    CLIENT_DROPOUT,
    COMPRESS,
    DOWNLOAD,
    MASK,
    NOISE,
    SAMPLE,
    STRAGGLER,
    TRAIN,
    stream,
)
from paradigms.federated.vmap_engine import VmapEngine
from paradigms.runner.errors import ConfigError

# A row's last columns: loss x samples, samples, aggregation weight, within the DP clip, and
# FLAG (1 sent, -1 rejected as non-finite, 0 not returned).
LOSS_SUM, SAMPLES, WEIGHT, WITHIN, FLAG = range(-5, 0)
TAIL = 5
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
    min_clients: int = 1  # fewer accepted updates than this: the round keeps the model
    engine: str = "loop"  # "loop" (one client after another) or "vmap" (vectorized clients)
    clients_per_step: int | None = 16  # vmap: clients trained at once (None: all of a rank's)
    stop_at: float | None = None  # stop once a round's validation accuracy reaches this


@dataclass
class Federation:
    """Each client's sample indices and labels (on the training device), the reader that
    makes training batches of them (``data.py``), each client's holdout (if any, as tensors)
    and the server's validation and test sets."""

    clients: list[tuple[torch.Tensor, torch.Tensor]]  # (indices into the training set, labels)
    read: Reader
    holdouts: dict[int, tuple[torch.Tensor, torch.Tensor]]  # by client; empty: none
    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None = None  # None: the rounds are not evaluated


class Simulation:
    """Runs the rounds on one process of ``fabric`` (None: one CPU process); rank 0 evaluates
    and writes."""

    def __init__(
        self,
        flat: FlatModel,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        federation: Federation,
        settings: SimulationSettings,
        seed: int,
        fabric: Any = None,
        attack: Attack | None = None,
        privacy: ClientDP | None = None,
        secure: SecureAggregation | None = None,
        compression: Compression | None = None,
        download: Compression | None = None,
    ) -> None:
        self.flat, self.optimizer, self.strategy = flat, optimizer, strategy
        if fabric is None:
            from lightning_fabric import Fabric

            fabric = Fabric(accelerator="cpu", devices=1)
        self.federation, self.settings, self.seed, self.fabric = federation, settings, seed, fabric
        self.rank, self.world = fabric.global_rank, fabric.world_size
        self.attack, self.privacy, self.secure = attack or Attack(), privacy, secure
        self.compression = compression or Compression()
        self.download = download or Compression()
        self.engine = self.build_engine()
        self.num_clients = len(federation.clients)
        self.per_round = max(1, round(settings.fraction * self.num_clients))
        self.malicious = self.attack.choose(self.num_clients, stream(seed, -1, -1, ATTACK))
        # Only the sum of the clients' rows reaches the strategy (sum-based strategies only).
        self.private = privacy is not None or secure is not None
        per_client_state = strategy.uses_variates or settings.norm == "local"
        self.summed = self.private or (strategy.sum_based and not per_client_state)
        self.P, self.B = flat.params.numel(), flat.buffers.numel()
        self.V = self.P if strategy.uses_variates else 0
        self.norm_mask, self.variance_mask = flat.norm_mask.cpu(), flat.variance_mask.cpu()
        self.width = self.P + self.B + self.V + TAIL
        params = [p.numel() for p in flat.model.parameters()]
        self.tensors = params + (params if self.V else [])  # what a codec encodes, by tensor
        self.weights = params  # what the download codec encodes

    def build_engine(self) -> LoopEngine | VmapEngine:
        """The engine ``settings.engine`` names; a vectorized one is first tried on a batch of
        the largest client (a model vmap cannot run stops here, in one line)."""
        args = (self.flat, self.optimizer, self.strategy, self.fabric.autocast)
        if self.settings.engine == "loop":
            return LoopEngine(*args)
        precision = str(self.fabric.strategy.precision.precision)
        if precision == "bf16-mixed":  # BatchNorm's vmap rule mixes bf16 input, fp32 weights
            raise ConfigError(
                "trainer.precision",
                precision,
                "paradigm.engine=vmap does not train under autocast",
                "trainer.precision=32-true (or paradigm.engine=loop)",
            )
        engine = VmapEngine(*args, self.settings.clients_per_step)
        index, y = max(self.federation.clients, key=lambda client: len(client[1]))
        n = self.settings.batch_size
        engine.check(*self.federation.read(index[:n], y[:n]))
        return engine

    def initial_state(self) -> dict[str, Any]:
        """Round 0: the model's weights (rank 0's, when several processes), fresh state."""
        params, buffers = self.fabric.broadcast((self.flat.params.cpu(), self.flat.buffers.cpu()))
        return {
            "round": 0,
            "channels_last": self.flat.permuted,  # the flat vectors' memory order
            "params": params.clone(),
            "buffers": buffers.clone(),
            "strategy": self.strategy.init_state(params),
            "variates": {},  # client -> SCAFFOLD's c_i, once it has trained (else zero)
            "local_norm": {},  # client -> FedBN's own norm weights and buffers, once trained
            "privacy": self.privacy.init_state() if self.privacy else {},
            "residuals": {},  # client -> what error feedback has not sent yet
            "best": {
                "round": 0,
                "val_acc": -1.0,
                "params": params.clone(),
                "buffers": buffers.clone(),
            },
            "history": [],
        }

    def sample(self, round_: int) -> list[int]:
        order = torch.randperm(self.num_clients, generator=stream(self.seed, round_, -1, SAMPLE))
        return sorted(order[: self.per_round].tolist())

    def work(self, client: int, round_: int) -> LocalWork | None:
        """What the client does this round, or None when it does not return."""
        dropout = stream(self.seed, round_, client, CLIENT_DROPOUT)
        if torch.rand((), generator=dropout) < self.settings.client_dropout:
            return None
        index, y = self.federation.clients[client]
        if client in self.malicious:
            y = self.attack.data(y, self.flat.model.num_classes)
        full = self.settings.local_steps or self.settings.local_epochs * batches_per_epoch(
            len(y), self.settings.batch_size
        )
        steps, g = full, stream(self.seed, round_, client, STRAGGLER)
        if torch.rand((), generator=g) < self.settings.straggler:
            steps = int(torch.randint(1, full + 1, (), generator=g))
        train = stream(self.seed, round_, client, TRAIN)
        return LocalWork(self.federation.read, index, y, steps, self.settings.batch_size, train)

    def received(self, state: dict[str, Any], round_: int) -> torch.Tensor:
        """The global weights as the round's clients decode them: one broadcast, encoded by
        the download codec (the server keeps its exact copy; the clients' updates are taken
        from what they received)."""
        if self.download.lossless:
            return state["params"]
        generator = stream(self.seed, round_, -1, DOWNLOAD)
        return self.download.roundtrip(state["params"], self.weights, generator)

    def start_rows(
        self, state: dict[str, Any], clients: list[int], start: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The clients' start weights and buffers: the global model as received (``start``),
        with FedBN's own norm layers where a client has them."""
        params = start.expand(len(clients), -1).clone()
        buffers = state["buffers"].expand(len(clients), -1).clone()
        if self.settings.norm == "local":
            for k, client in enumerate(clients):
                stored = state["local_norm"].get(client)
                if stored is not None:
                    params[k, self.norm_mask] = stored[: len(stored) - self.B]
                    buffers[k] = stored[len(stored) - self.B :]
        return params, buffers

    def train_client(
        self, state: dict[str, Any], client: int, round_: int, sampled: list[int]
    ) -> torch.Tensor:
        """One client's row (zeros when it does not return this round)."""
        work = self.work(client, round_)
        if work is None:
            return torch.zeros(self.width, dtype=torch.int64 if self.secure else None)
        return self.train(state, [(client, work)], sampled, round_)[0][0]

    def train(
        self, state: dict[str, Any], jobs: list[tuple[int, LocalWork]], sampled: list[int], round_
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows of this rank's clients (see the module docstring), trained by the engine,
        and their next residuals (None without error feedback)."""
        rows = torch.zeros(len(jobs), self.width, dtype=torch.int64 if self.secure else None)
        feedback = self.compression.error_feedback
        residuals = torch.zeros(len(jobs), self.P + self.V) if feedback else None
        if not jobs:
            return rows, residuals
        clients, works = [c for c, _ in jobs], [w for _, w in jobs]
        device = self.fabric.device
        start = self.received(state, round_)
        params, buffers = (t.to(device) for t in self.start_rows(state, clients, start))
        variates = None
        if self.strategy.uses_variates:
            zero = torch.zeros(self.V)
            own = torch.stack([state["variates"].get(client, zero) for client in clients])
            variates = (state["strategy"]["c"] - own).to(device)
        trained = self.engine.train(params, buffers, works, start.to(device), variates)
        deltas = trained.params.cpu() - start
        lr = self.optimizer.param_groups[0]["lr"]
        momentum = self.optimizer.param_groups[0].get("momentum", 0.0)
        for k, (client, work) in enumerate(jobs):
            delta = deltas[k]
            if client in self.malicious:
                delta = self.attack.update(delta, stream(self.seed, round_, client, ATTACK))
            row = torch.zeros(self.width)
            row[: self.P], row[self.P : self.P + self.B] = delta, trained.buffers[k].cpu()
            if self.V:  # SCAFFOLD's option II, under the clients' momentum (strategies.py)
                row[self.P + self.B : LOSS_SUM] = self.strategy.variate_change(
                    delta, state["strategy"]["c"], work.steps, lr, momentum
                )
            n = float(len(work.y))
            row[LOSS_SUM:] = torch.tensor([float(trained.losses[k]) * n, n, n, 1.0, 1.0])
            if not self.compression.lossless:
                row, residual = self._compress(row, state, client, round_)
                if feedback:
                    residuals[k] = residual
            rows[k] = self.protect(row, state, client, sampled, round_) if self.summed else row
        return rows, residuals

    def _compress(
        self, row: torch.Tensor, state: dict[str, Any], client: int, round_: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The row as the server decodes it and the client's next residual. The codec encodes
        the parameter delta (and SCAFFOLD's variate change); the BatchNorm statistics, a few
        values, travel as float32: a rounded running-variance change could leave a variance
        negative or near zero (as DP noise can: ``VARIANCE_FLOOR``). An attacker poisons
        before this."""
        P, B = self.P, self.B
        update = torch.cat([row[:P], row[P + B : LOSS_SUM]])
        residual = state["residuals"].get(client)
        generator = stream(self.seed, round_, client, COMPRESS)
        sent, residual = self.compression.send(update, residual, self.tensors, generator)
        row = row.clone()
        row[:P], row[P + B : LOSS_SUM] = sent[:P], sent[P:]
        return row, residual

    def protect(
        self, row: torch.Tensor, state: dict[str, Any], client: int, sampled: list[int], round_: int
    ) -> torch.Tensor:
        """What a client sends when only sums are needed: its weighted update (buffers as
        deltas too) with its loss x samples, samples, weight and within-clip bit; clipped under
        DP (where every client weighs 1), masked under secure aggregation. A non-finite row is
        flagged -1."""
        P, B = self.P, self.B
        update = torch.cat([row[:P], row[P : P + B] - state["buffers"]])
        within, weight = 1.0, 1.0 if self.privacy else float(row[SAMPLES])
        if self.privacy:
            update, within = self.privacy.bound(update, state["privacy"])
        tail = torch.tensor([row[LOSS_SUM], row[SAMPLES], weight, within])
        sent = torch.cat([weight * update, tail])
        if not torch.isfinite(sent).all():
            return torch.cat([torch.zeros_like(sent), torch.tensor([-1.0])])
        if self.secure:
            masked = self.secure.mask(sent, client, sampled, self._pairs(round_))
            return torch.cat([masked, torch.tensor([1], dtype=torch.int64)])
        return torch.cat([sent, torch.tensor([1.0])])

    def _pairs(self, round_: int):
        """The seed shared by clients i < j in this round, as a generator."""
        return lambda i, j: stream(self.seed, round_, i * self.num_clients + j, MASK)

    def _sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return tensor
        return self.fabric.all_reduce(tensor.to(self.fabric.device), reduce_op="sum").cpu()

    def gather(
        self, rows: torch.Tensor, mine: list[int], sampled: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's contribution: (the rows of all sampled clients, or the sum of the
        accepted ones; each sampled client's flag)."""
        flags = torch.zeros(len(sampled), dtype=rows.dtype)
        flags[mine] = rows[:, FLAG]
        if not self.summed:
            full = torch.zeros(len(sampled), self.width, dtype=rows.dtype)
            full[mine] = rows
            full = self._sum_over_ranks(full)
            finite = torch.isfinite(full).all(1)
            full[:, FLAG] = torch.where(finite, full[:, FLAG], -full[:, FLAG].abs())
            return full, full[:, FLAG]
        partial = rows[rows[:, FLAG] == 1, :FLAG].sum(0)
        total = self._sum_over_ranks(torch.cat([partial, flags]))
        return total[: len(partial)], total[len(partial) :]

    def step(self, state: dict[str, Any], round_: int) -> tuple[dict[str, Any], dict[str, float]]:
        """One round; returns the next state and the round's traffic and client numbers."""
        sampled = self.sample(round_)
        works = [self.work(client, round_) for client in sampled]
        ranks = assign([w.steps if w else 0 for w in works], self.world)
        mine = [j for j, w in enumerate(works) if w is not None and ranks[j] == self.rank]
        rows, residuals = self.train(state, [(sampled[j], works[j]) for j in mine], sampled, round_)
        received, flags = self.gather(rows, mine, sampled)
        returned, accepted = flags != 0, flags == 1
        clients = [c for c, a in zip(sampled, accepted.tolist(), strict=True) if a]
        skipped = len(clients) < self.settings.min_clients
        if skipped:
            loss, state = float("nan"), dict(state)
        elif self.summed:
            state, loss = self._aggregate_sum(state, received, clients, sampled, round_)
        else:
            kept = received[accepted]
            state = self._aggregate(state, kept, clients)
            loss = float(kept[:, LOSS_SUM].sum() / kept[:, SAMPLES].sum())
        if residuals is not None and not skipped:
            state["residuals"] = self._keep_residuals(state, residuals, mine, sampled, accepted)
        state["round"] = round_ + 1
        metrics = {
            "clients/sampled": len(sampled),
            "clients/returned": int(returned.sum()),
            "clients/rejected": int((returned & ~accepted).sum()),
            "round/skipped": int(skipped),
            "train/client_loss": loss,
            **self._traffic(len(sampled), int(returned.sum())),
        }
        if self.malicious:
            metrics["clients/malicious"] = len(set(sampled) & set(self.malicious))
        if self.privacy:
            rate = self.per_round / self.num_clients
            metrics["privacy/epsilon"] = self.privacy.epsilon(round_ + 1, rate)
            metrics["privacy/clip"] = float(state["privacy"]["clip"])
        return state, metrics

    def _keep_residuals(
        self,
        state: dict[str, Any],
        residuals: torch.Tensor,
        mine: list[int],
        sampled: list[int],
        accepted: torch.Tensor,
    ) -> dict[int, torch.Tensor]:
        """Every client's residual, the same on every rank: the accepted clients' new ones (a
        rejected client, or one that did not return, keeps its own)."""
        full = torch.zeros(len(sampled), residuals.shape[1])
        full[mine] = residuals
        full = self._sum_over_ranks(full)
        kept = dict(state["residuals"])
        for j in accepted.nonzero().flatten().tolist():
            kept[sampled[j]] = full[j].clone()
        return kept

    def _traffic(self, sampled: int, returned: int) -> dict[str, int]:
        """Bytes the clients download (the weights as the download codec encodes them; the
        buffers and SCAFFOLD's server variate as float32) and upload: the encoded update,
        the buffers and the row's scalars (loss x samples, samples, weight, within-clip bit)
        as float32, or the whole masked int64 row under secure aggregation."""
        down = self.download.size(self.weights, clipped=False) + (self.B + self.V) * 4
        encoded = self.compression.size(self.tensors, clipped=self.privacy is not None)
        up = (self.width - 1) * 8 if self.secure else encoded + (self.B + TAIL - 1) * 4
        return {"bytes/down": sampled * down, "bytes/up": returned * up}

    def _aggregate_sum(
        self,
        state: dict[str, Any],
        total: torch.Tensor,
        clients: list[int],
        sampled: list[int],
        round_: int,
    ) -> tuple[dict[str, Any], float]:
        """The next state from the sum of the accepted rows alone (unmasked, noised under DP),
        and the clients' sample-weighted mean loss."""
        if self.secure:
            dropped = [c for c in sampled if c not in clients]
            total = self.secure.unmask(total, clients, dropped, self._pairs(round_))
        update, (loss, samples, weight, within) = total[:-4], total[-4:].tolist()
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
            buffers = torch.where(self.variance_mask, floor, buffers)
        state = {**state, "params": params, "strategy": strategy_state}
        return {**state, "buffers": buffers, "privacy": privacy}, loss / samples

    def _aggregate(self, state: dict[str, Any], rows: torch.Tensor, clients: list[int]) -> dict:
        P, B = self.P, self.B
        weights = rows[:, WEIGHT]
        variate_deltas = rows[:, P + B : LOSS_SUM] if self.V else None
        updates = Updates(rows[:, :P], weights, variate_deltas, self.num_clients)
        old = state["params"]
        params, strategy_state = self.strategy.aggregate(old, updates, state["strategy"])
        state = {**state, "params": params, "strategy": strategy_state}
        if B:
            state["buffers"] = self.strategy.combine_buffers(rows[:, P : P + B], weights)
        if variate_deltas is not None:
            variates, zero = dict(state["variates"]), torch.zeros(self.V)
            for k, client in enumerate(clients):
                variates[client] = variates.get(client, zero) + variate_deltas[k]
            state["variates"] = variates
        if self.settings.norm == "local":
            local = torch.cat([(old + rows[:, :P])[:, self.norm_mask], rows[:, P : P + B]], 1)
            state["local_norm"] = {
                **state["local_norm"],
                **{client: row.clone() for client, row in zip(clients, local, strict=True)},
            }
        return state

    def _evaluate(self, params: torch.Tensor, buffers: torch.Tensor, split) -> dict[str, float]:
        self.flat.load(params.to(self.flat.params.device), buffers.to(self.flat.params.device))
        args = (self.settings.eval_batch_size, self.settings.top_k, self.fabric.autocast)
        return evaluate(self.flat.model, *split, *args)

    def evaluate(self, state: dict[str, Any]) -> dict[str, float]:
        """The global model on the server's validation set, and each client's holdout (if
        any) with the client's own norm layers under FedBN."""
        val = self._evaluate(state["params"], state["buffers"], self.federation.val)
        metrics = {f"val/{k}": v for k, v in val.items()}
        holdout = []
        for client, split in (self.federation.holdouts or {}).items():
            params, buffers = self.start_rows(state, [client], state["params"])
            holdout.append(self._evaluate(params[0], buffers[0], split)["acc"])
        if holdout:
            metrics["fed/mean_acc"] = sum(holdout) / len(holdout)
            metrics["fed/worst_acc"] = min(holdout)
        return metrics

    def test(self, state: dict[str, Any]) -> dict[str, float]:
        """The model of the round selected on validation, on the test set (once)."""
        best = state["best"]
        test = self._evaluate(best["params"], best["buffers"], self.federation.test)
        return {f"test/{k}": v for k, v in test.items()}

    def run(self, state: dict[str, Any], on_round: Any) -> dict[str, Any]:
        """Rounds from ``state['round']`` to the settings'; after each, rank 0 evaluates on the
        validation set and keeps the best round's weights, then ``on_round(state, metrics)``
        runs on every rank (metrics only on rank 0): it records them and the checkpoint.
        Stops early once the best validation accuracy reaches ``settings.stop_at``."""
        for round_ in range(state["round"], self.settings.rounds):
            if self.reached(state):
                break
            started = time.perf_counter()
            state, metrics = self.step(state, round_)
            if self.rank == 0:
                trained = time.perf_counter()
                metrics = {"round": round_ + 1, **self.evaluate(state), **metrics}
                metrics["time/round_s"] = time.perf_counter() - started
                metrics["time/eval_s"] = time.perf_counter() - trained
                if metrics["val/acc"] > state["best"]["val_acc"]:
                    best = {"round": round_ + 1, "val_acc": metrics["val/acc"]}
                    state["best"] = {**best, "params": state["params"], "buffers": state["buffers"]}
                state["history"] = [*state["history"], metrics]
            on_round(state, metrics if self.rank == 0 else {})
        return state

    def reached(self, state: dict[str, Any]) -> bool:
        """Whether the best round met ``settings.stop_at``: rank 0 decides (it evaluates),
        every rank learns it, so all stop at the same round, after a resume too."""
        if self.settings.stop_at is None:
            return False
        return bool(self.fabric.broadcast(state["best"]["val_acc"] >= self.settings.stop_at))
