"""Federated learning, simulated: the training set split over clients, a global model trained
over communication rounds (McMahan et al. 2017, "Communication-efficient learning of deep
networks from decentralized data"), evaluated centrally after every round.

Clients are not processes: their data stays in memory as tensors and one model object is
reused (see ``client.py``). With ``processes > 1`` the clients of a round are spread over
processes joined by torch.distributed (gloo); a run already inside a process group (torchrun,
SLURM) uses that group as it is.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console

from paradigms.contract import Because, Context, Needs, Result, Row
from paradigms.federated.attacks import Attack
from paradigms.federated.client import FlatModel
from paradigms.federated.partition import Partitioner
from paradigms.federated.privacy import ClientDP
from paradigms.federated.report import (
    RoundDisplay,
    RoundLog,
    label_counts,
    plot_accuracy,
    plot_partition,
    print_partition,
)
from paradigms.federated.secure import SecureAggregation
from paradigms.federated.server import (
    Federation,
    Simulation,
    SimulationSettings,
    load_checkpoint,
    save_checkpoint,
)
from paradigms.federated.strategies import Strategy
from paradigms.models.backbone import count_parameters, create_model, export_model
from paradigms.models.classifier import reported_metrics
from paradigms.models.optim import build_optimizer
from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Check

PARTITION_SEED = 7_919  # offsets the partition's stream from the rounds' streams

# The rounds run in this process (or in ``processes`` of their own), on the CPU, in fp32.
OWN_LOOP = {
    "accelerator": Check(
        lambda v: v in ("cpu", "auto"), "federated trains its clients on the CPU", "trainer=cpu"
    ),
    "devices": Check(
        lambda v: v in (1, "1", "auto"),
        "federated runs its rounds itself, not in the Trainer's processes",
        "trainer.devices=1 (spread the clients over processes with paradigm.processes=N)",
    ),
    "precision": Check(
        lambda v: str(v) in ("32", "32-true"),
        "federated trains in fp32",
        "trainer.precision=32-true",
    ),
}


class Federated:
    """Simulated federated training of ``backbone`` on the configured data.

    Config keys: rounds, num_clients, fraction (of clients sampled a round), local_epochs or
    local_steps, batch_size, optimizer (the clients'), strategy (group ``paradigm/strategy``),
    partition (group ``paradigm/partition``), norm (``average`` | ``local``: FedBN),
    client_dropout (the chance that a sampled client does not return), straggler,
    local_holdout (federated evaluation), processes, progress, top_k, attack (group
    ``paradigm/attack``: malicious clients), privacy (group ``paradigm/privacy``: DP-FedAvg,
    off by default), secure_aggregation, secure_bits.
    Reports ``test/*`` of the final global model (and ``privacy/epsilon`` under DP); writes
    metrics.csv (a row per round), accuracy.png, label_distribution.png,
    checkpoints/last_round.pt and model.safetensors; the summary names the malicious clients.
    Needs the training split in memory as tensors, the Trainer's single CPU process in fp32
    and the CSV logger (its rounds go to metrics.csv). Raises ConfigError for a partition
    that cannot be made, a strategy that cannot work with the clients sampled a round (or
    from sums alone, under DP or secure aggregation), or a comparison (none is offered).
    """

    default_compare: tuple[str, ...] = ()
    needs = Needs(
        tensors=Because(
            "data",
            "federated splits the training set over clients as tensors in memory",
            "use data=digits (or another datamodule that holds its data in memory)",
        ),
        trainer=OWN_LOOP,
        loggers=("ResumableCSVLogger", "CSVLogger"),
    )

    def __init__(
        self,
        strategy: Strategy,
        partition: Partitioner,
        optimizer: dict[str, Any],
        rounds: int = 30,
        num_clients: int = 20,
        fraction: float = 0.5,
        local_epochs: int = 1,
        local_steps: int | None = None,
        batch_size: int = 32,
        norm: str = "average",
        client_dropout: float = 0.0,
        straggler: float = 0.0,
        local_holdout: float = 0.0,
        processes: int = 1,
        progress: bool = True,
        top_k: int = 3,
        attack: Attack | None = None,
        privacy: ClientDP | None = None,
        secure_aggregation: bool = False,
        secure_bits: int = 24,
    ) -> None:
        self.strategy, self.partition, self.optimizer = strategy, partition, optimizer
        self.attack, self.privacy = attack or Attack(), privacy
        self.secure = SecureAggregation(secure_bits) if secure_aggregation else None
        self.secure_bits = secure_bits
        self.num_clients, self.local_holdout = num_clients, local_holdout
        self.processes, self.progress = processes, progress
        self.settings = SimulationSettings(
            rounds,
            fraction,
            local_epochs,
            local_steps,
            batch_size,
            client_dropout,
            straggler,
            norm,
            eval_batch_size=512,
            top_k=top_k,
        )

    def reports(self, compare: list[str]) -> list[str]:
        if compare:
            raise ConfigError("compare", compare[0], "federated offers no baseline", "compare=none")
        return reported_metrics(self.settings.top_k, [""]) + (
            ["privacy/epsilon"] if self.privacy else []
        )

    def check(self) -> None:
        """Stops on what the components cannot do together, before anything is built (each
        value's range is its schema's, checked before torch loads)."""
        s = self.settings
        self.strategy.check(max(1, round(s.fraction * self.num_clients)))
        if not (self.privacy or self.secure):
            return
        what = "client-level DP" if self.privacy else "secure aggregation"
        strategy = type(self.strategy).__name__
        if not self.strategy.sum_based or self.strategy.uses_variates:
            variates = " (and per-client control variates)" if self.strategy.uses_variates else ""
            raise ConfigError(
                "paradigm.strategy",
                strategy,
                f"{what} gives the server only the sum of the client updates; {strategy} "
                f"needs each one{variates}",
                "paradigm/strategy=fedavg (or fedprox, fedavgm, fedadam, fedyogi, fedadagrad)",
            )
        if s.norm != "average":
            raise ConfigError(
                "paradigm.norm",
                s.norm,
                f"{what} cannot keep per-client BatchNorm states on the server",
                "paradigm.norm=average",
            )

    def run(self, context: Context) -> Result:
        self.check()
        if dist.is_available() and dist.is_initialized():
            return self.simulate(context, dist.get_rank(), dist.get_world_size())
        if self.processes == 1:
            return self.simulate(context, 0, 1)
        port = _free_port()
        spawn = mp.get_context("spawn")
        workers = [
            spawn.Process(target=_worker, args=(self, context, rank, port), daemon=True)
            for rank in range(1, self.processes)
        ]
        for worker in workers:
            worker.start()
        _join(0, self.processes, port)
        try:
            return self.simulate(context, 0, self.processes)
        except BaseException:
            for worker in workers:  # they would wait for rank 0 in the next all_reduce
                worker.terminate()
            raise
        finally:
            for worker in workers:
                worker.join()
            dist.destroy_process_group()

    def federation(self, context: Context, console: Console | None) -> tuple[Federation, int]:
        """Every client's data (and holdout), the test set, and the number of classes."""
        datamodule = context.datamodule()
        datamodule.setup("fit")
        x, y = datamodule.splits["train"].tensors
        generator = torch.Generator().manual_seed(context.seed * 1_000_003 + PARTITION_SEED)
        parts = self.partition(y, self.num_clients, generator)
        clients, holdouts = [], []
        for part in parts:
            held = int(self.local_holdout * len(part))
            order = part[torch.randperm(len(part), generator=generator)]
            train, hold = order[held:].sort().values, order[:held].sort().values
            clients.append((x[train], y[train]))
            if held:
                holdouts.append((x[hold], y[hold]))
        if console is not None:
            counts = label_counts([c[1] for c in clients], datamodule.num_classes)
            name = type(self.partition).__name__
            print_partition(counts, f"{name} partition over {self.num_clients} clients", console)
            plot_partition(counts, context.run_dir / "label_distribution.png")
        return Federation(
            clients, holdouts, datamodule.splits["test"].tensors
        ), datamodule.num_classes

    def simulate(self, context: Context, rank: int, world: int) -> Result:
        """This process's share of the simulation; rank 0 reports and writes."""
        console = Console() if rank == 0 else None
        federation, num_classes = self.federation(context, console)
        model = create_model(context.backbone, num_classes)
        flat = FlatModel(model)
        optimizer = build_optimizer(model, self.optimizer)
        sim = Simulation(
            flat,
            optimizer,
            self.strategy,
            federation,
            self.settings,
            context.seed,
            rank,
            world,
            self.attack,
            self.privacy,
            self.secure,
        )
        state = (
            load_checkpoint(context.run_dir) if context.stages.resume else None
        ) or sim.initial_state()
        log = RoundLog(context.run_dir, state["round"]) if rank == 0 else None

        def on_round(state: dict[str, Any], metrics: dict[str, Any]) -> None:
            log.append(metrics)
            save_checkpoint(state, context.run_dir)
            display.update(metrics)

        with RoundDisplay(
            self.settings.rounds,
            state["round"],
            console or Console(quiet=True),
            self.progress and rank == 0,
        ) as display:
            state = sim.run(state, on_round)
        metrics = sim.evaluate(state) if rank == 0 else {}
        if rank != 0:
            return Result(metrics)
        export_model(
            model, context.run_dir, {"backbone": context.backbone, "num_classes": num_classes}
        )
        plot_accuracy(log.rows, context.run_dir / "accuracy.png")
        trainable, total = count_parameters(model)
        name = f"federated {type(self.strategy).__name__} ({type(self.partition).__name__})"
        down = sum(float(r["bytes/down"]) for r in log.rows)
        up = sum(float(r["bytes/up"]) for r in log.rows)
        rejected = sum(int(r["clients/rejected"]) for r in log.rows)
        notes = [
            f"{self.settings.rounds} rounds, {self.num_clients} clients, {world} process(es); "
            f"traffic {down / 2**20:.1f} MiB down, {up / 2**20:.1f} MiB up; "
            f"{rejected} non-finite client update(s) rejected"
        ]
        if sim.malicious:
            notes.append(f"malicious clients ({type(self.attack).__name__}): {sim.malicious}")
        if self.privacy:
            metrics["privacy/epsilon"] = float(log.rows[-1]["privacy/epsilon"])
            notes.append(
                f"client-level DP: epsilon {metrics['privacy/epsilon']:.3f} at delta "
                f"{self.privacy.delta:g} (noise multiplier {self.privacy.noise_multiplier}, "
                f"sampling rate {sim.per_round / self.num_clients:g}, {self.settings.rounds} rounds)"
            )
        if self.secure:
            notes.append("secure aggregation: the server handled masked updates only")
        test = {k: v for k, v in metrics.items() if k.startswith("test/")}
        return Result({**metrics}, [Row(name, test, trainable, total)], notes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(minutes=10),
    )


def _worker(paradigm: Federated, context: Context, rank: int, port: int) -> None:
    """A spawned rank > 0: trains its share of every round."""
    _join(rank, paradigm.processes, port)
    try:
        paradigm.simulate(context, rank, paradigm.processes)
    finally:
        dist.destroy_process_group()
