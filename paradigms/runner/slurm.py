"""What a SLURM job asks for, read from the run's own config (conf/hydra/launcher/slurm.yaml).

Lightning's ``SLURMEnvironment`` makes SLURM's tasks the DDP ranks, so a job needs one task per
device on each node: ``tasks_per_node`` and ``gpus_per_node`` come from ``trainer.devices``
(no GPU for a CPU trainer), and ``cpus_per_task`` from ``threads`` plus the data-loader workers
when ``threads`` is a count. ``-1`` or ``auto`` devices are only counted on the node, after the
request, so a sweep that would ask for them stops before its first job (``check_request``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from paradigms.runner.errors import ConfigError


def devices_per_node(devices: Any) -> int:
    """``trainer.devices`` as a count (a list of ids counts its ids); -1 for what only the node
    can count (-1, auto), which ``check_request`` refuses."""
    if isinstance(devices, str):
        devices = devices.split(",") if "," in devices else devices.strip()
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len([d for d in devices if str(d).strip()])
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return devices if isinstance(devices, int) and devices > 0 else -1


def gpus_per_node(accelerator: str, devices: Any) -> int:
    """The GPUs a node must have: none for a CPU trainer, else one per device."""
    return 0 if accelerator == "cpu" else devices_per_node(devices)


def cpus_per_task(threads: Any, loader_workers: int, default: int) -> int:
    """Cores per task: its torch threads plus its data-loader workers, or ``default`` when
    ``threads=auto`` (the job then takes what SLURM gives it)."""
    return threads + loader_workers if isinstance(threads, int) else default


def register_resolvers() -> None:
    """Makes ``${slurm_devices:...}``, ``${slurm_gpus:...}`` and ``${slurm_cpus:...}`` usable."""
    for name, function in (
        ("slurm_devices", devices_per_node),
        ("slurm_gpus", gpus_per_node),
        ("slurm_cpus", cpus_per_task),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def check_request(config: DictConfig) -> None:
    """Raises ConfigError when a SLURM launcher would ask for devices it cannot count."""
    if not str(OmegaConf.select(config, "hydra.launcher._target_") or "").endswith("SlurmLauncher"):
        return
    for key, least in (("tasks_per_node", 1), ("gpus_per_node", 0)):
        value = OmegaConf.select(config, f"hydra.launcher.{key}")
        if not isinstance(value, int) or value < least:
            raise ConfigError(
                "trainer.devices",
                OmegaConf.select(config, "trainer.devices"),
                f"a SLURM job asks for a count of devices per node (hydra.launcher.{key}); "
                "-1 and auto are only known on the node",
                "trainer.devices=4 (the GPUs of each node; one task each)",
            )
