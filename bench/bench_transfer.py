"""Transfer vs scratch on the default digits task pair, mean over seeds.

Source: digits 0-4, all their training data; target: digits 5-9 with few labels per class.
Each seed runs ``python cli.py paradigm=transfer seed=S`` (its own source stage, and the
scratch baseline on the same target data). Claim: transfer beats scratch by 15+ points.

    python bench/bench_transfer.py [--seeds 0 1 2] [--train-per-class 10] [--backbone resnet10t]
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
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def run(seed: int, args: argparse.Namespace, output_root: Path) -> dict[str, float]:
    """One transfer run with its scratch comparison; returns its summary metrics."""
    command = [
        sys.executable,
        "cli.py",
        "paradigm=transfer",
        f"seed={seed}",
        f"backbone={args.backbone}",
        f"data.train_per_class={args.train_per_class}",
        f"paths.output_root={output_root}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        *args.overrides,
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    summary = next((output_root / "transfer").glob("*/*/summary.json"))
    metrics = json.loads(summary.read_text())["metrics"]
    summary.unlink()
    summary.parent.rename(summary.parent.with_name(f"seed{seed}"))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-per-class", type=int, default=10)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("overrides", nargs="*", help="extra cli.py overrides")
    args = parser.parse_args()
    started = time.perf_counter()
    table = Table(
        title=f"transfer vs scratch: digits 0-4 -> 5-9, {args.train_per_class} labels/class, {args.backbone}"
    )
    for column in ("seed", "transfer test/acc", "scratch test/acc", "gain (points)"):
        table.add_column(column, justify="right")
    transfer, scratch = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            metrics = run(seed, args, Path(tmp))
            transfer.append(metrics["test/acc"])
            scratch.append(metrics["scratch/test/acc"])
            table.add_row(
                str(seed),
                f"{transfer[-1]:.4f}",
                f"{scratch[-1]:.4f}",
                f"{100 * (transfer[-1] - scratch[-1]):+.1f}",
            )
    mean_t, mean_s = statistics.mean(transfer), statistics.mean(scratch)
    table.add_row(
        "mean", f"{mean_t:.4f}", f"{mean_s:.4f}", f"{100 * (mean_t - mean_s):+.1f}", style="bold"
    )
    Console().print(table)
    record = {
        "claim": "transfer beats scratch by 15+ points",
        "backbone": args.backbone,
        "train_per_class": args.train_per_class,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "transfer_acc": transfer,
        "scratch_acc": scratch,
        "mean_gain_points": round(100 * (mean_t - mean_s), 2),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_result("transfer", record)


if __name__ == "__main__":
    main()
