"""What tests share: run the real CLI in its own process (a fork of tests/zygote.py), on tiny settings, in a temp output root."""

from __future__ import annotations

import json
import os
import select
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
    flags = [o for o in overrides if o.startswith("-")]
    values = [o for o in overrides if not o.startswith("-")]
    process = forked_cli([*flags, f"paths.output_root={output_root}", *values], timeout=timeout)
    if check and process.returncode != 0:
        raise AssertionError(
            f"cli failed ({process.returncode}):\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    return process


class _Zygote:
    """The client side of tests/zygote.py: one per test process, started on first use."""

    process: subprocess.Popen | None = None

    @classmethod
    def ask(cls, request: dict[str, Any]) -> subprocess.Popen:
        if cls.process is None or cls.process.poll() is not None:
            cls.process = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "zygote.py")],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        cls.process.stdin.write(json.dumps(request) + "\n")
        cls.process.stdin.flush()
        return cls.process


def forked_cli(
    args: list[str],
    timeout: float = 600,
    ready: Callable[[], bool] | None = None,
    sig: int = signal.SIGKILL,
    whole_group: bool = False,
) -> subprocess.CompletedProcess:
    """Runs ``python cli.py <args>`` as a fork of tests/zygote.py (the stack imported once) and
    returns it as ``subprocess.run`` would; with ``ready``, sends it ``sig`` once ``ready()``
    holds (``whole_group``: to the processes it started too, e.g. the ranks a DDP launcher
    re-executes). Raises subprocess.TimeoutExpired (after killing it) past ``timeout`` seconds."""
    kill = os.killpg if whole_group else os.kill  # the run leads its own process group
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    command = ["cli.py", *args]
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        request = {"args": command, "env": env, "cwd": str(ROOT), "stdout": str(out)}
        zygote = _Zygote.ask({**request, "stderr": str(err)})
        pid = json.loads(zygote.stdout.readline())["pid"]
        deadline, signalled = time.monotonic() + timeout, False
        while not select.select([zygote.stdout], [], [], 0.05)[0]:
            due = time.monotonic() > deadline
            if ready is not None and not signalled and (due or ready()):
                kill(pid, sig)  # past the timeout too: the caller asked for an interrupted run
                signalled, deadline = True, time.monotonic() + 120
            elif due:
                kill(pid, signal.SIGKILL)
                zygote.stdout.readline()
                raise subprocess.TimeoutExpired(command, timeout)
        returncode = json.loads(zygote.stdout.readline())["returncode"]
        return subprocess.CompletedProcess(command, returncode, out.read_text(), err.read_text())


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
    return forked_cli(args, timeout=timeout, ready=ready, sig=sig, whole_group=whole_group)


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


def linear_stage(
    stage_dir: Path, loggers: dict[str, Any] | None = None, **options: Any
) -> dict[str, float]:
    """One real stage in ``stage_dir`` through ``Stages.fit_and_test``: a linear model on 8x8
    digits, 2 epochs, a checkpoint per epoch; ``options`` are the other ``Stages`` fields."""
    from torch import nn

    from datamodules.digits import DigitsDataModule
    from paradigms.models.classifier import ClassificationModule
    from paradigms.runner.stages import Stages

    trainer = {"_target_": "pytorch_lightning.Trainer", "max_epochs": 2, "accelerator": "cpu",
               "enable_progress_bar": False, "enable_model_summary": False}  # fmt: skip
    every_epoch = {"_target_": "pytorch_lightning.callbacks.ModelCheckpoint",
                   "filename": "best-{epoch:03d}", "auto_insert_metric_name": False,
                   "save_top_k": -1, "save_last": True}  # fmt: skip
    stages = Stages(
        trainer, {"checkpoint": every_epoch}, loggers or {}, 0, run_dir=stage_dir, **options
    )
    data = DigitsDataModule(image_size=8, in_chans=1, train_per_class=5, batch_size=25)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    module = ClassificationModule(model, 10, {"name": "adam", "lr": 0.01}, {"name": "none"})
    return stages.fit_and_test(module, data, stage_dir)
