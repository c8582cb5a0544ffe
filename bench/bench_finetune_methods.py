"""Fine-tuning methods vs scratch and the un-adapted source model, mean over seeds.

Source: clean digits, all labels; target: the same ten digits rotated and noisy, few labels
(the default finetune scenario). Each (method, seed) runs ``python cli.py paradigm=finetune
paradigm/method=M seed=N``; the runs of one seed share its cached source stage, and the
first also trains the scratch baseline on the same target data. Claim: every method beats
scratch on target test accuracy.

    python bench/bench_finetune_methods.py [--seeds 0 1 2] [--backbone resnet10t] [overrides...]
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

METHODS = ("full", "partial", "lp_ft", "gradual", "lora")


def run(method: str, seed: int, compare: bool, args: argparse.Namespace, root: Path) -> dict:
    """One fine-tuning run; returns its summary (metrics and rows)."""
    out = root / f"{method}-{seed}"
    command = [
        sys.executable,
        "cli.py",
        "paradigm=finetune",
        f"paradigm/method={method}",
        f"seed={seed}",
        f"backbone={args.backbone}",
        f"compare={'scratch' if compare else 'none'}",
        f"paths.output_root={out}",
        f"paths.cache_dir={root / 'cache'}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        *args.overrides,
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(next(out.glob("finetune/*/*/summary.json")).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("overrides", nargs="*", help="extra cli.py overrides")
    args = parser.parse_args()
    started = time.perf_counter()
    acc: dict[str, list[float]] = {"scratch": [], "source (no adaptation)": []}
    params: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for i, method in enumerate(args.methods):
                result = run(method, seed, i == 0, args, Path(tmp))
                metrics = result["metrics"]
                acc.setdefault(method, []).append(metrics["test/acc"])
                row = next(r for r in result["rows"] if r["name"].startswith("finetune"))
                params[method] = row["trainable_params"]
                if i == 0:
                    acc["scratch"].append(metrics["scratch/test/acc"])
                    acc["source (no adaptation)"].append(metrics["source/test/acc"])
                    params["scratch"] = row["total_params"]
                    params["source (no adaptation)"] = 0
    scratch = statistics.mean(acc["scratch"])
    table = Table(
        title=f"fine-tuning methods: clean digits -> rotated+noisy digits, {args.backbone}, "
        f"seeds {args.seeds}"
    )
    for column in ("model", "test/acc mean", "min", "max", "trainable params", "vs scratch"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, values in acc.items():
        mean = statistics.mean(values)
        table.add_row(
            name,
            f"{mean:.4f}",
            f"{min(values):.4f}",
            f"{max(values):.4f}",
            f"{params[name]:,}",
            "" if name == "scratch" else f"{100 * (mean - scratch):+.1f}",
        )
    Console().print(table)
    beats = all(statistics.mean(acc[s]) > scratch for s in args.methods)
    Console().print(f"every method beats scratch: {beats}")
    write_result(
        "finetune_methods",
        {
            "backbone": args.backbone,
            "seeds": args.seeds,
            "overrides": args.overrides,
            "test_acc": acc,
            "trainable_params": params,
            "every_method_beats_scratch": beats,
            "wall_time_s": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
