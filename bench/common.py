"""Shared by the benchmarks: compose the runner's real config, time things, write JSON lines."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from paradigms.runner.run_dirs import register_resolvers
from paradigms.runner.threads import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def composed(overrides: list[str]) -> dict[str, Any]:
    """The config ``python cli.py <overrides>`` would run, as plain containers."""
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def median_time(samples: list[float]) -> float:
    return statistics.median(samples)


def write_result(claim: str, record: dict[str, Any]) -> Path:
    """Appends one JSON line with the machine's description to bench/results/<claim>.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "claim": claim,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": platform.node(),
        "cpu": machine()["cpu"],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512: kernels differ
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        **record,
    }
    path = RESULTS / f"{claim}.jsonl"
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")
    return path
