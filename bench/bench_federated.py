"""Accuracy: FedAvg under Dirichlet label skew, the non-IID penalty of shards against IID,
and FedProx / SCAFFOLD against FedAvg under shards (issue 6's checks), through the real CLI.

Digits, 20 clients, fraction 0.5, 1 local epoch, test_resnet at 16 px. Prints each run's
final and best global test accuracy and the first round reaching 90%.

    python bench/bench_federated.py [--rounds 30] [--only dirichlet-fedavg,...]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["paradigm=federated", "backbone=test_resnet", "paradigm.progress=false"]
CASES = {
    "dirichlet-fedavg": ["paradigm/partition=dirichlet", "paradigm/strategy=fedavg"],
    "iid-fedavg": ["paradigm/partition=iid", "paradigm/strategy=fedavg"],
    "shards-fedavg": ["paradigm/partition=shards", "paradigm/strategy=fedavg"],
    "shards-fedprox": ["paradigm/partition=shards", "paradigm/strategy=fedprox"],
    "shards-scaffold": ["paradigm/partition=shards", "paradigm/strategy=scaffold"],
}


def run(name: str, rounds: int, extra: list[str]) -> dict:
    """One case: its accuracy curve's final, best and first round at >= 90%."""
    with TemporaryDirectory() as out:
        command = [sys.executable, "cli.py", f"paths.output_root={out}", *COMMON]
        command += [*CASES[name], f"paradigm.rounds={rounds}", *extra]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        metrics = next(Path(out).glob("federated/*/*/metrics.csv"))
        curve = [float(row["val/acc"]) for row in csv.DictReader(metrics.open())]  # validation
    reached = next((i + 1 for i, acc in enumerate(curve) if acc >= 0.9), None)
    return {"case": name, "final": curve[-1], "best": max(curve), "round_90": reached, "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides for every case")
    args = parser.parse_args()
    rows = [run(name, args.rounds, args.overrides) for name in args.only.split(",")]
    print(f"digits, 20 clients, fraction 0.5, 1 local epoch, {args.rounds} rounds")
    print(f"{'case':<18}{'final acc':>10}{'best acc':>10}{'round>=90%':>12}{'wall s':>8}")
    for r in rows:
        print(
            f"{r['case']:<18}{r['final']:>10.4f}{r['best']:>10.4f}"
            f"{str(r['round_90'] or '-'):>12}{r['s']:>8.1f}"
        )
    write_result("federated", {"rounds": args.rounds, "overrides": args.overrides, "runs": rows})


if __name__ == "__main__":
    main()
