"""Settings of the federated simulation and of its strategies, partitioners, attacks, privacy
and compression (see ``paradigms.runner.validation``). A component's schema has its class's
name: ``paradigms.federated.strategies.Krum`` is checked by ``Krum`` here. What depends on the
data or on several components (a partition that cannot be made, Krum's clients per round,
strategies that cannot work from sums alone, compression under secure aggregation) is checked
by the paradigm before training."""

from __future__ import annotations

from typing import Any

from paradigms.models.schema import Optimizer
from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Schema, flag, join, number, one_of, optional, text, whole


class Federated(Schema):
    """``conf/paradigm/federated.yaml``."""

    rounds = whole(1, example=30)
    num_clients = whole(1, example=20)
    fraction = number(0, 1, open_low=True, example=0.5)
    local_epochs = whole(1, example=1)
    local_steps = optional(whole(1, example=10))
    batch_size = whole(1, example=32)
    optimizer = Optimizer
    norm = one_of("average", "local")
    client_dropout = number(0, 1, open_high=True, example=0.1)
    straggler = number(0, 1, example=0.2)
    local_holdout = number(0, 1, open_high=True, example=0.2)
    min_clients = whole(1, example=2)
    progress = flag()
    top_k = whole(1, example=3)
    secure_aggregation = flag()
    secure_bits = whole(8, 40, example=24)  # fixed-point fraction bits; int64 sums
    engine = one_of("loop", "vmap")
    clients_per_step = optional(whole(1, example=16))
    stop_at = optional(number(0, 1, open_low=True, example=0.9))

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        strategy, optimizer = node.get("strategy") or {}, node.get("optimizer") or {}
        name = optimizer.get("name")
        if node.get("engine") == "vmap" and name != "momentum":
            raise ConfigError(
                join(at, "optimizer.name"),
                name,
                "paradigm.engine=vmap steps the clients by hand with SGD and heavy-ball momentum",
                f"{join(at, 'optimizer.name')}=momentum (or {join(at, 'engine')}=loop)",
            )
        if str(strategy.get("_target_", "")).endswith(".Scaffold") and name != "momentum":
            raise ConfigError(
                join(at, "optimizer.name"),
                name,
                "SCAFFOLD reads the clients' mean gradient off their local displacement, which "
                "is known for plain SGD and heavy-ball momentum only",
                f"{join(at, 'optimizer.name')}=momentum",
            )


class FedAvg(Schema):
    """``conf/paradigm/strategy/fedavg.yaml``; the base of every strategy."""

    server_lr = number(0, open_low=True, example=1.0)


class FedProx(FedAvg):
    mu = number(0, example=0.01)


class FedAvgM(FedAvg):
    momentum = number(0, 1, open_high=True, example=0.9)


class FedOpt(FedAvg):
    """FedAdam, FedYogi and FedAdagrad."""

    beta1 = number(0, 1, open_high=True, example=0.9)
    beta2 = number(0, 1, open_high=True, example=0.99)
    tau = number(0, open_low=True, example=0.001)


FedAdam = FedYogi = FedAdagrad = FedOpt
Scaffold = Median = FedAvg


class TrimmedMean(FedAvg):
    beta = number(0, 0.5, open_high=True, example=0.1)


class Krum(FedAvg):
    byzantine = whole(0, example=1)
    num_selected = whole(1, example=1)


class Dirichlet(Schema):
    """``conf/paradigm/partition/dirichlet.yaml``."""

    alpha = number(0, open_low=True, example=0.5)
    min_size = whole(0, example=10)


class Shards(Schema):
    """``conf/paradigm/partition/shards.yaml``."""

    shards_per_client = whole(1, example=2)


class QuantitySkew(Schema):
    """``conf/paradigm/partition/quantity.yaml``."""

    profile = one_of("linear", "exponential", "lognormal")
    spread = number(1, example=10.0)
    sigma = number(0, example=1.0)


class ByColumn(Schema):
    """``conf/paradigm/partition/by_column.yaml``."""

    column = text(example="writer")


class Attack(Schema):
    """``conf/paradigm/attack/none.yaml``; the base of every attack."""

    fraction = number(0, 1, open_high=True, example=0.2)


class SignFlip(Attack):
    scale = number(example=4.0)


class Scaled(Attack):
    scale = number(example=10.0)


class Gaussian(Attack):
    std = number(0, example=0.1)


LabelFlip = Attack


class ClientDP(Schema):
    """``conf/paradigm/privacy/dp.yaml`` and ``dp_adaptive.yaml``."""

    clip = number(0, open_low=True, example=1.0)
    noise_multiplier = number(0, example=1.0)
    delta = number(0, 1, open_low=True, open_high=True, example="1e-5")
    adaptive = flag()
    target_quantile = number(0, 1, open_low=True, open_high=True, example=0.5)
    clip_lr = number(0, example=0.2)
    count_stddev = number(0, example=1.0)

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        z, stddev = node.get("noise_multiplier", 1.0), node.get("count_stddev", 1.0)
        if node.get("adaptive") and z >= 2 * stddev:
            raise ConfigError(
                join(at, "count_stddev"),
                stddev,
                f"must exceed noise_multiplier / 2 = {z / 2} "
                "(the clipped count's noise takes part of the budget)",
                "raise count_stddev or lower noise_multiplier",
            )


class TopK(Schema):
    """``conf/paradigm/compression/top_k.yaml``."""

    fraction = number(0, 1, open_low=True, example=0.01)
    error_feedback = flag()
