"""Federated learning, simulated: the training set split over clients, a global model trained
over communication rounds (McMahan et al. 2017, "Communication-efficient learning of deep
networks from decentralized data"), evaluated on the server's validation set after every
round; the round with the best validation accuracy is tested once at the end.

Clients are not processes: each holds the indices of its samples in the training set, read
through the datamodule (``data.py``: tensors in memory with the datamodule's batch
augmentation, or files through its training transform), and one model object is reused (see
``client.py``). The rounds run on Lightning Fabric, built from the run's
``trainer`` config (``processes.py``): the clients of a round are spread over its processes
(``trainer.devices`` x ``trainer.num_nodes``), on its device, under its precision.
"""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console

from paradigms.contract import Context, Needs, Result, Row
from paradigms.federated.attacks import Attack
from paradigms.federated.checkpoint import RoundCheckpoint
from paradigms.federated.client import FlatModel
from paradigms.federated.compression import Compression
from paradigms.federated.data import training_labels, training_set
from paradigms.federated.partition import Partitioner
from paradigms.federated.privacy import ClientDP
from paradigms.federated.processes import TRAINER_NEEDS, build_fabric, check_processes
from paradigms.federated.report import (
    RoundDisplay,
    RoundLoggers,
    label_counts,
    plot_accuracy,
    print_partition,
)
from paradigms.federated.secure import SecureAggregation
from paradigms.federated.server import (
    Federation,
    Simulation,
    SimulationSettings,
)
from paradigms.federated.strategies import Strategy
from paradigms.models.backbone import count_parameters, create_model, export_model
from paradigms.models.classifier import reported_metrics
from paradigms.models.optim import build_optimizer
from paradigms.runner.accelerate import accelerate
from paradigms.runner.errors import ConfigError
from paradigms.runner.plots import client_label_distribution

PARTITION_SEED = 7_919  # offsets the partition's stream from the rounds' streams


def speed_knobs(callbacks: dict[str, Any]) -> dict[str, Any]:
    """``callbacks.accelerate``'s settings, which the rounds apply as the Trainer's stages do
    (none when that callback is dropped); torch.compile is refused."""
    knobs = {k: v for k, v in (callbacks.get("accelerate") or {}).items() if k != "_target_"}
    if knobs.get("compile"):
        raise ConfigError(
            "callbacks.accelerate.compile",
            True,
            "the federated rounds are not compiled (every client's weights are swapped into "
            "one model, and the vmap engine calls it functionally)",
            "callbacks.accelerate.compile=false",
        )
    return knobs


def check_layout(state: dict[str, Any], flat: FlatModel, setting: bool | str) -> None:
    """A checkpoint's flat vectors are in its run's memory order; another order would
    scramble them, so a resume whose ``channels_last`` setting would change it stops in one
    line."""
    saved = state.get("channels_last", False)  # checkpoints from before the key: standard
    if saved != flat.permuted:
        order = {True: "channels-last", False: "in standard order"}
        raise ConfigError(
            "callbacks.accelerate.channels_last",
            setting,
            f"the checkpoint's weights are {order[saved]} and this run would lay them out "
            f"{order[flat.permuted]}",
            f"resume with callbacks.accelerate.channels_last={str(saved).lower()}",
        )


class Federated:
    """Simulated federated training of ``backbone`` on the configured data.

    Config keys: rounds, num_clients, fraction (of clients sampled a round), local_epochs or
    local_steps, batch_size, optimizer (the clients'), strategy (group ``paradigm/strategy``),
    partition (group ``paradigm/partition``), norm (``average`` | ``local``: FedBN),
    client_dropout (the chance that a sampled client does not return), straggler,
    min_clients (fewer accepted updates: the round keeps the model), local_holdout (federated
    evaluation), progress, top_k, attack (group ``paradigm/attack``: malicious clients),
    privacy (group ``paradigm/privacy``: DP-FedAvg, off by default), secure_aggregation,
    secure_bits, compression (group ``paradigm/compression``: what clients upload, encoded),
    download (group ``paradigm/download``: the global weights as clients receive them),
    engine (``loop`` | ``vmap``: the clients of a step trained at once with torch.func,
    ``vmap_engine.py``), clients_per_step (vmap's group size) and stop_at (stop once a round's
    validation accuracy reaches it). Processes, device and
    precision are the ``trainer``'s.
    Reports ``val/*`` of the round selected on validation accuracy and ``test/*`` of its
    model (and ``privacy/epsilon`` under DP); logs a step per round to the run's loggers
    (metrics.csv among them), writes accuracy.png, label_distribution.png,
    checkpoints/last_round.pt and model.safetensors (the selected round's model); the summary
    names the selected round and the malicious clients. Takes any single-label datamodule.
    Raises ConfigError for a partition that cannot be made (a missing or one-valued column), a strategy that cannot work with
    the clients sampled a round (or from sums alone, under DP or secure aggregation), a
    lossy compression under secure aggregation or FedBN, more processes than clients a round,
    a model or optimizer the vmap engine cannot train (random numbers in the forward pass,
    data-dependent control flow, an optimizer other than momentum, bf16 autocast), or a
    comparison (none is offered).
    """

    default_compare: tuple[str, ...] = ()
    needs = Needs(trainer=TRAINER_NEEDS)

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
        min_clients: int = 1,
        local_holdout: float = 0.0,
        progress: bool = True,
        top_k: int = 3,
        attack: Attack | None = None,
        privacy: ClientDP | None = None,
        secure_aggregation: bool = False,
        secure_bits: int = 24,
        compression: Compression | None = None,
        download: Compression | None = None,
        engine: str = "loop",
        clients_per_step: int | None = 16,
        stop_at: float | None = None,
    ) -> None:
        self.strategy, self.partition, self.optimizer = strategy, partition, optimizer
        self.attack, self.privacy = attack or Attack(), privacy
        self.compression = compression or Compression()
        self.download = download or Compression()
        self.secure = SecureAggregation(secure_bits) if secure_aggregation else None
        self.secure_bits = secure_bits
        self.num_clients, self.local_holdout, self.progress = num_clients, local_holdout, progress
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
            min_clients=min_clients,
            engine=engine,
            clients_per_step=clients_per_step,
            stop_at=stop_at,
        )
        self.per_round = max(1, round(fraction * num_clients))

    def reports(self, compare: list[str]) -> list[str]:
        if compare:
            raise ConfigError("compare", compare[0], "federated offers no baseline", "compare=none")
        return (
            ["val/acc", "val/loss"]
            + reported_metrics(self.settings.top_k, [""])
            + (["privacy/epsilon"] if self.privacy else [])
        )

    def check(self) -> None:
        """Stops on what the components cannot do together, before anything is built (each
        value's range is its schema's, checked before torch loads)."""
        s = self.settings
        self.strategy.check(self.per_round)
        if s.min_clients > self.per_round:
            raise ConfigError(
                "paradigm.min_clients",
                s.min_clients,
                f"a round samples only {self.per_round} client(s)",
                f"paradigm.min_clients={self.per_round} (or raise paradigm.fraction)",
            )
        if self.secure and not self.compression.lossless:
            raise ConfigError(
                "paradigm.compression",
                type(self.compression).__name__,
                "secure aggregation masks every value of an update with uniform int64 noise, "
                "so a compressed update would still travel as int64",
                "paradigm/compression=none (or paradigm.secure_aggregation=false)",
            )
        if s.norm == "local" and not self.compression.lossless:
            raise ConfigError(
                "paradigm.compression",
                type(self.compression).__name__,
                "under FedBN the simulation keeps each client's norm layers from its upload, "
                "as trained: a compressed upload would round the layers the client keeps",
                "paradigm/compression=none (or paradigm.norm=average)",
            )
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
        knobs = speed_knobs(context.stages.callbacks)
        datamodule = context.datamodule()
        datamodule.setup("fit")
        parts = self.split(context, datamodule)
        self.check()
        check_processes(context.stages.trainer, self.per_round)
        fabric = build_fabric(context.stages.trainer)
        return fabric.launch(self.simulate, context, datamodule, parts, knobs)

    def split(self, context: Context, datamodule: Any) -> list[torch.Tensor]:
        """The clients' indices into the training set (the partition may decide how many
        clients there are: one per value of a column)."""
        labels = training_labels(datamodule)
        generator = torch.Generator().manual_seed(context.seed * 1_000_003 + PARTITION_SEED)
        columns = getattr(datamodule, "train_columns", {})
        parts = self.partition(labels, self.num_clients, generator, columns)
        self.num_clients = len(parts)
        self.per_round = max(1, round(self.settings.fraction * self.num_clients))
        return parts

    def federation(
        self, context: Context, datamodule: Any, parts: list[torch.Tensor], device: Any, console
    ) -> Federation:
        """Every client's indices and labels (and holdout) on ``device``, the validation and
        test sets."""
        data = training_set(datamodule, device)
        generator = torch.Generator().manual_seed(context.seed * 1_000_003 + PARTITION_SEED + 1)
        clients, holdouts = [], {}
        for client, part in enumerate(parts):
            held = int(self.local_holdout * len(part))
            order = part[torch.randperm(len(part), generator=generator)]
            train, hold = order[held:].sort().values, order[:held].sort().values
            clients.append((train.to(device), data.labels[train].to(device)))
            if held:
                holdouts[client] = data.evaluation(hold, data.labels[hold].to(device))
        if console is not None:
            counts = label_counts([y.cpu() for _, y in clients], datamodule.num_classes)
            name = type(self.partition).__name__
            print_partition(counts, f"{name} partition over {self.num_clients} clients", console)
            client_label_distribution(counts.tolist(), context.run_dir / "label_distribution.png")
        self.num_classes = datamodule.num_classes
        return Federation(clients, data.train, holdouts, data.test, data.val)

    def simulate(
        self,
        fabric: Any,
        context: Context,
        datamodule: Any,
        parts: list[torch.Tensor],
        knobs: dict[str, Any],
    ) -> Result:
        """This process's share of the simulation; rank 0 reports and writes, every rank
        returns the metrics."""
        rank = fabric.global_rank
        console = Console() if rank == 0 else None
        federation = self.federation(context, datamodule, parts, fabric.device, console)
        fabric.seed_everything(context.seed)
        model = create_model(context.backbone, self.num_classes).to(fabric.device)
        accelerate(model, fabric.device, **knobs)
        flat = FlatModel(model)
        optimizer = build_optimizer(model, self.optimizer)
        sim = Simulation(
            flat,
            optimizer,
            self.strategy,
            federation,
            self.settings,
            context.seed,
            fabric,
            self.attack,
            self.privacy,
            self.secure,
            self.compression,
            self.download,
        )
        checkpoint = RoundCheckpoint(fabric, context.run_dir)
        resumed = checkpoint.load() if context.stages.resume else None
        if resumed:
            check_layout(resumed, flat, knobs.get("channels_last", "auto"))
        state = resumed or sim.initial_state()
        stages = context.stages
        loggers = (
            RoundLoggers(stages.loggers, context.run_dir, stages.hparams, state["round"])
            if rank == 0
            else None
        )

        def on_round(state: dict[str, Any], metrics: dict[str, Any]) -> None:
            if loggers:
                loggers.log(metrics)
                display.update(metrics)
            checkpoint.save(state)

        with RoundDisplay(
            self.settings.rounds,
            state["round"],
            console or Console(quiet=True),
            self.progress and rank == 0,
        ) as display:
            state = sim.run(state, on_round)
        result = self.report(context, sim, state, fabric.world_size) if rank == 0 else None
        if loggers:
            loggers.finish()
        metrics = fabric.broadcast(result.metrics if result else None)
        return result or Result(metrics)

    def report(self, context: Context, sim: Simulation, state: dict, processes: int) -> Result:
        """Tests the round selected on validation; exports its model; the summary's lines."""
        best, history = state["best"], state["history"]
        selected = next(m for m in history if m["round"] == best["round"])
        metrics = {k: v for k, v in selected.items() if k.startswith("val/")}
        metrics.update(sim.test(state))  # leaves the selected model loaded
        model = sim.flat.model
        info = {"backbone": context.backbone, "num_classes": self.num_classes}
        export_model(model, context.run_dir, info)
        plot_accuracy(history, context.run_dir / "accuracy.png")
        trainable, total = count_parameters(model)
        name = f"federated {type(self.strategy).__name__} ({type(self.partition).__name__})"
        down = sum(m["bytes/down"] for m in history)
        up = sum(m["bytes/up"] for m in history)
        rejected = sum(m["clients/rejected"] for m in history)
        skipped = sum(m["round/skipped"] for m in history)
        ran = len(history)
        stopped = (
            f" (stopped: val acc reached {self.settings.stop_at})"
            if ran < self.settings.rounds
            else ""
        )
        notes = [
            f"{ran} of {self.settings.rounds} rounds{stopped}, {self.num_clients} clients, {processes} "
            f"process(es); traffic {down / 2**20:.1f} MiB down, {up / 2**20:.1f} MiB up; "
            f"{rejected} non-finite client update(s) rejected; {skipped} round(s) skipped "
            f"with fewer than {self.settings.min_clients} update(s)",
            f"selected on validation accuracy: round {best['round']} of {ran} "
            "(its model is tested and exported)",
        ]
        if sim.malicious:
            notes.append(f"malicious clients ({type(self.attack).__name__}): {sim.malicious}")
        if self.privacy:
            metrics["privacy/epsilon"] = float(history[-1]["privacy/epsilon"])
            notes.append(
                f"client-level DP: epsilon {metrics['privacy/epsilon']:.3f} at delta "
                f"{self.privacy.delta:g} (noise multiplier {self.privacy.noise_multiplier}, "
                f"sampling rate {sim.per_round / self.num_clients:g}, {ran} rounds)"
            )
        if self.secure:
            notes.append("secure aggregation: the server handled masked updates only")
        if not self.compression.lossless:
            notes.append(f"uploads compressed: {type(self.compression).__name__}")
        if not self.download.lossless:
            notes.append(f"downloads compressed: {type(self.download).__name__}")
        shown = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
        return Result(metrics, [Row(name, shown, trainable, total)], notes)
