"""Multi-task weightings vs single-task models on multi-label digits, over several seeds.

Every weighting trains one multi-task model per seed through the real CLI; the single-task
baselines (one model per task, same backbone and budget) come from the equal run's
``compare=single_task``. Prints per-task test accuracy (mean +- std over seeds) and Delta_m%
against the same seed's single-task models, and appends a JSON line to
bench/results/multitask.jsonl.

    python bench/bench_multitask.py                         # 3 seeds, 20 epochs, every method
    python bench/bench_multitask.py --epochs 1 --seeds 0    # a quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from paradigms.multitask.paradigm import delta_m
from paradigms.multitask.tasks import parse_tasks

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("equal", "static", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad")


def run(method: str, seed: int, args: argparse.Namespace, root: Path) -> Path:
    """One CLI run; returns its run directory."""
    out = root / f"{method}-{seed}"
    command = [
        sys.executable,
        "cli.py",
        "paradigm=multitask",
        f"paradigm/weighting={method}",
        f"backbone={args.backbone}",
        f"trainer.max_epochs={args.epochs}",
        f"seed={seed}",
        f"compare={'single_task' if method == 'equal' else 'none'}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        "logger=csv",
        f"paths.output_root={out}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return next((out / "multitask").glob("*/*"))


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--backbone", default="test_resnet")
    args = parser.parse_args()
    methods = ["equal", *[m for m in args.methods if m != "equal"]]

    results: dict[str, dict[str, list[float]]] = {}
    single: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for method in methods:
                started = time.perf_counter()
                run_dir = run(method, seed, args, Path(tmp))
                seconds = time.perf_counter() - started
                metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
                config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
                tasks = parse_tasks(OmegaConf.to_container(config.paradigm.tasks))
                if method == "equal":
                    single[seed] = {
                        k.removeprefix("single_task/"): v
                        for k, v in metrics.items()
                        if k.startswith("single_task/")
                    }
                    record = results.setdefault("single-task", {})
                    for task in tasks:
                        key = f"test/{task.name}/acc"
                        record.setdefault(key, []).append(single[seed][key])
                    record.setdefault("time_s", []).append(metrics["time_s/single_task_sum"])
                record = results.setdefault(method, {})
                for task in tasks:
                    key = f"test/{task.name}/acc"
                    record.setdefault(key, []).append(metrics[key])
                record.setdefault("delta_m_pct", []).append(delta_m(tasks, metrics, single[seed]))
                record.setdefault("time_s", []).append(metrics["time_s/multitask"])
                print(f"seed {seed} {method}: {seconds:.0f} s", file=sys.stderr)

    columns = [k for k in results["equal"] if k.startswith("test/")]
    table = Table(
        title=f"multitask digits, {args.backbone}, {args.epochs} epochs, seeds {args.seeds}"
    )
    for name in ["model", *columns, "Δm% vs single-task", "train time (s)"]:
        table.add_column(name, justify="right")
    for name, record in results.items():
        delta = spread(record["delta_m_pct"]) if "delta_m_pct" in record else "0 (reference)"
        table.add_row(
            name,
            *(spread(record[c]) for c in columns),
            delta,
            f"{statistics.mean(record['time_s']):.1f}",
        )
    Console(width=150).print(table)
    line = {
        "bench": "multitask",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "backbone": args.backbone,
        "results": results,
    }
    write_result("multitask", line)


if __name__ == "__main__":
    main()
