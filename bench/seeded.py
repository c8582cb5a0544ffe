"""Headline comparisons over several seeds: each (configuration, seed) one real ``cli.py`` run,
selected on validation and reported on test, summarised with the sweep report's intervals
(``paradigms.runner.intervals``: mean, std, 95% t interval; differences paired by seed).

Runs are kept under ``--work`` (default ``bench/runs/<claim>``, outside git): a run whose
``summary.json`` exists is read, not re-run, so a long bench killed half-way continues where
it stopped, and ``--only`` runs some configurations now and the rest later. Source stages and
baselines are cached under ``<work>/cache``, shared by every run of the bench.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import write_result
from rich.console import Console
from rich.table import Table

from paradigms.runner.intervals import Interval, interval, paired

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null"]


def arguments(doc: str, claim: str, configs: dict[str, list[str]]) -> argparse.ArgumentParser:
    """The options every seeded bench has: seeds, which configurations, where runs live,
    and extra cli.py overrides for every run (e.g. trainer.max_epochs=1 for a smoke run)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", default=",".join(configs), help="comma-separated configurations")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "runs" / claim)
    parser.add_argument("overrides", nargs="*", help="extra cli.py overrides for every run")
    return parser


def run(overrides: list[str], run_root: Path, cache_dir: Path) -> dict[str, Any]:
    """One ``cli.py`` run writing under ``run_root``; its summary.json (read back if it ran)."""
    done = sorted(run_root.glob("*/*/*/summary.json"))
    if done:
        return json.loads(done[-1].read_text())
    shutil.rmtree(run_root, ignore_errors=True)  # a run killed half-way starts again
    command = [sys.executable, "cli.py", *QUIET, *overrides]
    command += [f"paths.output_root={run_root}", f"paths.cache_dir={cache_dir}"]
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if process.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr[-2000:]}")
    return json.loads(sorted(run_root.glob("*/*/*/summary.json"))[-1].read_text())


def over_seeds(
    configs: dict[str, list[str]], args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """Every chosen configuration over every seed: label -> one summary per seed."""
    chosen = [c for c in args.only.split(",") if c]
    results = {}
    for label in chosen:
        results[label] = [
            run(
                [*configs[label], f"seed={seed}", *args.overrides],
                args.work / label / f"seed{seed}",
                args.work / "cache",
            )
            for seed in args.seeds
        ]
    return results


def values(summaries: list[dict[str, Any]], metric: str) -> list[float]:
    return [s["metrics"].get(metric, float("nan")) for s in summaries]


def report(
    title: str,
    results: dict[str, list[dict[str, Any]]],
    columns: list[str],
    pairs: list[tuple[str, str, str, str]],
) -> dict[str, Any]:
    """Prints each configuration's columns (mean ± 95% half-width) and each paired
    difference ``(name, (label, metric), minus (label, metric))`` given as
    ``(label_a, metric_a, label_b, metric_b)``; returns them for ``write_result``."""
    table = Table(title=f"{title}: mean ± 95% interval (t) over seeds", title_justify="left")
    for column in ["configuration", "seeds", *columns]:
        table.add_column(column, justify="left" if column == "configuration" else "right")
    record: dict[str, Any] = {"configurations": {}, "differences": {}}
    for label, summaries in results.items():
        spreads = {m: interval(values(summaries, m)) for m in columns}
        table.add_row(label, str(len(summaries)), *(str(spreads[m]) for m in columns))
        record["configurations"][label] = {m: as_dict(i) for m, i in spreads.items()}
    console = Console(width=max(Console().width, 160))  # a log file keeps whole columns
    console.print(table)
    for label_a, metric_a, label_b, metric_b in pairs:
        if label_a not in results or label_b not in results:
            continue
        gain = paired(values(results[label_a], metric_a), values(results[label_b], metric_b))
        name = f"{label_a} {metric_a} - {label_b} {metric_b}"
        record["differences"][name] = as_dict(gain)
        verdict = "excludes 0" if gain.n > 1 and (gain.low > 0 or gain.high < 0) else "includes 0"
        console.print(
            f"  {name}: {100 * gain.mean:+.2f} points, 95% interval "
            f"[{100 * gain.low:+.2f}, {100 * gain.high:+.2f}] ({verdict}, n={gain.n})"
        )
    return record


def as_dict(spread: Interval) -> dict[str, float]:
    return {
        "mean": spread.mean,
        "std": spread.std,
        "low": spread.low,
        "high": spread.high,
        "n": spread.n,
    }


def record_run(
    claim: str, record: dict[str, Any], args: argparse.Namespace, started: float
) -> None:
    """Adds the seeds, the overrides and the wall time to ``record`` and writes it."""
    record |= {"seeds": args.seeds, "overrides": args.overrides}
    record["wall_time_s"] = round(time.perf_counter() - started, 1)
    write_result(claim, record)
