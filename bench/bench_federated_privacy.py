"""Robustness and privacy on digits, through the real CLI (issue 7's checks).

1. Clean FedAvg against FedAvg with 20% sign-flip attackers (``-4 delta``) and the robust
   strategies (median, trimmed mean with beta 0.3, Krum with f 2) under the same attackers:
   the robust ones should stay within 5 points of clean, FedAvg fall well below.
2. DP-FedAvg (fixed clip 3) at three noise multipliers: final accuracy against epsilon at
   delta 1e-5 (opacus' RDP accountant); and adaptive clipping (Andrew et al., the clip
   following the median update norm) at z 1 and at the fixed clip's best z.

IID, 20 clients, fraction 0.5, 1 local epoch, test_resnet.

    python bench/bench_federated_privacy.py [--rounds 30] [--only clean,fedavg-attacked,...]
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
COMMON = [
    "paradigm=federated",
    "backbone=test_resnet",
    "paradigm.progress=false",
    "paradigm/partition=iid",
]
ATTACK = ["paradigm/attack=sign_flip", "paradigm.attack.fraction=0.2"]
DP = ["paradigm/privacy=dp", "paradigm.privacy.clip=3.0"]
CASES = {
    "clean": [],
    "fedavg-attacked": ATTACK,
    "median-attacked": [*ATTACK, "paradigm/strategy=median"],
    "trimmed-attacked": [*ATTACK, "paradigm/strategy=trimmed_mean", "paradigm.strategy.beta=0.3"],
    "krum-attacked": [*ATTACK, "paradigm/strategy=krum", "paradigm.strategy.byzantine=2"],
    "multikrum-attacked": [
        *ATTACK,
        "paradigm/strategy=krum",
        "paradigm.strategy.byzantine=2",
        "paradigm.strategy.num_selected=6",
    ],
    "dp-z0.3": [*DP, "paradigm.privacy.noise_multiplier=0.3"],
    "dp-z0.1": [*DP, "paradigm.privacy.noise_multiplier=0.1"],
    "dp-z0.03": [*DP, "paradigm.privacy.noise_multiplier=0.03"],
    "dp-adaptive-z1": ["paradigm/privacy=dp_adaptive", "paradigm.privacy.noise_multiplier=1.0"],
    "dp-adaptive-z0.03": [
        "paradigm/privacy=dp_adaptive",
        "paradigm.privacy.noise_multiplier=0.03",
        "paradigm.privacy.clip=3.0",
    ],
}


def run(name: str, rounds: int, extra: list[str]) -> dict:
    """One case: its final and best global accuracy (and final epsilon under DP)."""
    with TemporaryDirectory() as out:
        command = [sys.executable, "cli.py", f"paths.output_root={out}", *COMMON]
        command += [*CASES[name], f"paradigm.rounds={rounds}", *extra]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        metrics = next(Path(out).glob("federated/*/*/metrics.csv"))
        rows = list(csv.DictReader(metrics.open()))
    curve = [float(row["val/acc"]) for row in rows]  # the validation curve
    epsilon = float(rows[-1]["privacy/epsilon"]) if "privacy/epsilon" in rows[-1] else None
    return {"case": name, "final": curve[-1], "best": max(curve), "epsilon": epsilon, "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides for every case")
    args = parser.parse_args()
    rows = [run(name, args.rounds, args.overrides) for name in args.only.split(",")]
    clean = next((r["final"] for r in rows if r["case"] == "clean"), None)
    print(f"digits IID, 20 clients, fraction 0.5, 1 local epoch, {args.rounds} rounds")
    print(f"{'case':<18}{'final acc':>10}{'best acc':>10}{'vs clean':>10}{'epsilon':>12}{'s':>7}")
    for r in rows:
        gap = f"{100 * (r['final'] - clean):+.1f}pt" if clean is not None else "-"
        eps = f"{r['epsilon']:.3g}" if r["epsilon"] is not None else "-"
        print(
            f"{r['case']:<18}{r['final']:>10.4f}{r['best']:>10.4f}{gap:>10}{eps:>12}{r['s']:>7.1f}"
        )
    write_result(
        "federated_privacy", {"rounds": args.rounds, "overrides": args.overrides, "runs": rows}
    )


if __name__ == "__main__":
    main()
