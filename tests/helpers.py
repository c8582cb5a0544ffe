"""What tests share: run the real CLI in a subprocess, on tiny settings, in a temp output root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from paradigms.runner.run_dirs import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A real timm model that learns digits in a few seconds on a CPU, without progress bars.
FAST = [
    "backbone=test_resnet",
    "trainer.max_epochs=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
]


def cli(
    *overrides: str, output_root: Path, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Runs ``python cli.py`` with ``overrides`` writing under ``output_root``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    flags = [o for o in overrides if o.startswith("-")]
    values = [o for o in overrides if not o.startswith("-")]
    process = subprocess.run(
        [sys.executable, "cli.py", *flags, f"paths.output_root={output_root}", *values],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"cli failed ({process.returncode}):\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    return process


# Trainer arguments of a real Lightning Trainer that writes and prints nothing.
QUIET = {
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "use_distributed_sampler": False,
}


def quiet_trainer(**flags: Any) -> Any:
    """A real Lightning Trainer on the CPU without logs, checkpoints or progress bars;
    ``flags`` add or replace Trainer arguments."""
    import pytorch_lightning as pl  # here: importing these helpers loads no torch

    return pl.Trainer(**{**QUIET, **flags})


def base_model_file(directory: Path, scaled_norms: bool = False) -> Path:
    """A user's own base model: timm's test_resnet (10 classes) saved to a .safetensors file,
    its BatchNorm statistics moved by one batch (so that a moved running mean shows).
    ``scaled_norms`` draws the BatchNorm scales from [0.5, 1.5]: timm zero-initialises each
    block's last one, which would stop every gradient inside the blocks."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("test_resnet", num_classes=10)
    for name, param in model.named_parameters():
        if scaled_norms and "bn" in name and name.endswith("weight"):
            torch.nn.init.uniform_(param, 0.5, 1.5)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 32, 32))
    path = directory / "base.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def interrupted(
    args: list[str],
    ready: Callable[[], bool],
    sig: int = signal.SIGKILL,
    timeout: float = 300,
    whole_group: bool = False,
) -> subprocess.CompletedProcess:
    """Runs ``python cli.py <args>`` and sends it ``sig`` once ``ready()`` holds (or after
    ``timeout`` seconds); returns the stopped process with its output. ``whole_group`` sends
    it to the processes the run started too (the ranks a DDP launcher re-executes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        command = [sys.executable, "cli.py", *args]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=whole_group,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None and not ready():
            time.sleep(0.05)
        if whole_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        process.wait(timeout=120)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())


def run_dirs(output_root: Path, paradigm: str) -> list[Path]:
    """Run directories of ``paradigm`` under ``output_root``, oldest first."""
    return sorted((output_root / paradigm).glob("*/*"))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def composed(overrides: list[str]) -> DictConfig:
    """The config ``python cli.py <overrides>`` composes, Hydra's node included (so that
    ``${hydra:...}`` interpolations resolve). Composed once per test session: do not change it."""
    cfg = _compose(tuple(overrides))
    HydraConfig.instance().set_config(cfg)
    return cfg


@cache
def _compose(overrides: tuple[str, ...]) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _owners() -> dict[str, list[str]]:
    """Groups that an option's defaults list brings in (``paradigm/strategy`` by
    ``paradigm=federated``), with the override that selects that option."""
    owners: dict[str, list[str]] = {}
    for path in sorted(CONF.glob("*/*.yaml")):
        for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []:
            for name in entry if isinstance(entry, dict) else []:
                if not name.startswith(("/", "override ", "optional ")) and "@" not in name:
                    owners.setdefault(
                        f"{path.parent.name}/{name}", [f"{path.parent.name}={path.stem}"]
                    )
    return owners


def every_option() -> list[list[str]]:
    """Overrides selecting each option of each config group, found by walking conf/: a
    top-level group by itself, a nested one with the option that brings it in, a scenario
    (``scenario/<data>/<paradigm>``, chosen by config.yaml) through its data and paradigm,
    Hydra's own (``hydra/*``) as they are, any other group added with ``+``."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))["defaults"]
    top = {next(iter(e)).removeprefix("optional ") for e in defaults if isinstance(e, dict)}
    owners = _owners()
    selections = []
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        if group == ".":
            continue
        if group.startswith("scenario/"):
            selections.append([f"data={path.parent.name}", f"paradigm={path.stem}"])
        elif group in top or group in owners or group.startswith("hydra/"):
            selections.append([*owners.get(group, []), f"{group}={path.stem}"])
        else:
            selections.append([f"+{group}={path.stem}"])
    return selections
