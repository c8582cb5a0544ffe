"""Where the clients of a round run: Lightning Fabric built from the run's ``trainer`` config
(accelerator, devices, num_nodes, strategy, precision), and which rank trains which client.

Fabric launches the processes as it does for any script (``ddp`` re-executes the command line,
``ddp_spawn`` forks the ranks; SLURM and torchrun through its own environment detection), sets
up the process group and places the model on ``fabric.device``. Clients go to ranks by their
expected work, so a round takes as long as its busiest rank and no longer than it must.
"""

from __future__ import annotations

from typing import Any

from paradigms.runner.errors import ConfigError
from paradigms.runner.threads import device_count
from paradigms.runner.validation import Check

PRECISIONS = ("32", "32-true", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")

# What federated accepts of the trainer config (checked with the rest before any work).
TRAINER_NEEDS = {
    "precision": Check(
        lambda v: str(v) in PRECISIONS,
        "federated trains in fp32 or under bf16 autocast (fp16 would need loss scaling)",
        "trainer.precision=bf16-mixed (or 32-true)",
    ),
    "strategy": Check(
        lambda v: str(v) in STRATEGIES,
        "federated spreads whole clients over processes; it does not shard a model",
        "trainer.strategy=ddp (or auto)",
    ),
}


def process_count(trainer: dict[str, Any]) -> int:
    """Processes the run uses: devices per node x nodes."""
    accelerator = str(trainer.get("accelerator", "auto"))
    return device_count(accelerator, trainer.get("devices", 1)) * int(trainer.get("num_nodes", 1))


def check_processes(trainer: dict[str, Any], per_round: int) -> None:
    """Stops when a round has fewer clients than there are processes to train them."""
    processes = process_count(trainer)
    if processes > per_round:
        raise ConfigError(
            "trainer.devices",
            trainer.get("devices"),
            f"{processes} processes for {per_round} client(s) a round leaves a process idle",
            f"trainer.devices={max(1, per_round // int(trainer.get('num_nodes', 1)))} "
            "(or sample more clients: paradigm.fraction)",
        )


def build_fabric(trainer: dict[str, Any]) -> Any:
    """The Fabric of the run's trainer settings (not yet launched)."""
    from lightning_fabric import Fabric

    return Fabric(
        accelerator=trainer.get("accelerator", "auto"),
        devices=trainer.get("devices", 1),
        num_nodes=int(trainer.get("num_nodes", 1)),
        strategy=trainer.get("strategy", "auto"),
        precision=str(trainer.get("precision", "32-true")),
    )


def assign(work: list[int], world: int) -> list[int]:
    """The rank of each client: longest work first to the least loaded rank (ties: the lower
    client index, the lower rank), so every rank computes the same assignment."""
    loads, ranks = [0] * world, [0] * len(work)
    for client in sorted(range(len(work)), key=lambda c: (-work[c], c)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        ranks[client] = rank
        loads[rank] += work[client]
    return ranks
