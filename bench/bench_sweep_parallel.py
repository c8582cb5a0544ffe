"""Claim: a sweep's jobs run side by side finish sooner than one after another.

A sweep of 4 seeds (scratch, test_resnet, digits) as a whole ``python cli.py -m`` process, with
the sequential launcher (basic), ``hydra/launcher=parallel`` (workers forked from a server that
imported torch once; each job takes its share of the cores) and Hydra's joblib launcher (each
worker imports torch again); launchers alternate within each repeat and the median wall time
is kept. Also the median job time (``job.json``) and the load average around the runs (the
cores may be shared). ``--launchers slurm_local --seeds 1`` and ``--seeds 2`` give a submitit
job's time alone and beside another.

    python bench/bench_sweep_parallel.py [--repeats 3] [--epochs 3] [--seeds 4] [--launchers ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, median_time, write_result
from rich.console import Console
from rich.table import Table

LAUNCHERS = {
    "sequential": [],
    "parallel": ["hydra/launcher=parallel"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "slurm_local": ["hydra/launcher=slurm_local"],  # all jobs at once, 1 core each
}


def sweep(launcher: list[str], epochs: int, seeds: int, output_root: Path) -> dict[str, float]:
    """Runs one sweep; returns its wall time and its median job time, in seconds."""
    command = [
        sys.executable,
        "cli.py",
        "-m",
        "paradigm=scratch",
        "backbone=test_resnet",
        f"trainer.max_epochs={epochs}",
        f"seed={','.join(map(str, range(seeds)))}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        f"paths.output_root={output_root}",
        *launcher,
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - started
    jobs = [json.loads(p.read_text()) for p in output_root.glob("multirun/*/*/*/job.json")]
    assert len(jobs) == seeds and all(j["status"] == "completed" for j in jobs), jobs
    return {"wall": wall, "job": statistics.median(j["wall_time_s"] for j in jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument(
        "--launchers", default="sequential,parallel,joblib", help=", ".join(LAUNCHERS)
    )
    args = parser.parse_args()
    names = args.launchers.split(",")
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = names if repeat % 2 == 0 else names[::-1]
            for name in order:
                output_root = Path(tmp) / f"{name}_{repeat}"
                samples[name].append(sweep(LAUNCHERS[name], args.epochs, args.seeds, output_root))
    load_after = os.getloadavg()[0]
    walls = {name: median_time([s["wall"] for s in runs]) for name, runs in samples.items()}
    jobs = {name: median_time([s["job"] for s in runs]) for name, runs in samples.items()}
    table = Table(
        title=f"sweep of {args.seeds} seeds, {args.epochs} epochs (median of {args.repeats})"
    )
    for column in ("launcher", "sweep wall (s)", "job (s)", "sequential / this"):
        table.add_column(column, justify="right")
    for name in names:
        speedup = walls["sequential"] / walls[name] if "sequential" in walls else float("nan")
        table.add_row(name, f"{walls[name]:.1f}", f"{jobs[name]:.1f}", f"{speedup:.2f}x")
    Console().print(table)
    Console().print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after")
    write_result(
        "sweep_parallel",
        {
            "seeds": args.seeds,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "usable_cpus": len(os.sched_getaffinity(0)),
            "sweep_wall_s": walls,
            "job_s": jobs,
            "samples": samples,
            "load_average": [load_before, load_after],
        },
    )


if __name__ == "__main__":
    main()
