"""Speed: federated rounds on two Fabric processes (``trainer=ddp_cpu``) against one
(``trainer=cpu``), through the real CLI on the same task: digits, 20 clients, fraction 0.5,
E=1, batch 32, mobilenetv3_small_050 at 32 px, 10 rounds.

Two figures per run: the round loop (the sum of metrics.csv's ``time/round_s``, rank 0's
timer around each round) and the whole process (``python cli.py`` from start to exit). The
two settings run alternately, ``--repeats`` times each, repeat r with ``seed=r`` for both (so
the accuracies pair by seed); the medians and their ratios are printed and written to
bench/results/federated_processes.jsonl with the paired test-accuracy difference (mean and
95% t interval: two processes add float noise only, so it should include 0). The target is a round-loop ratio >= 1.6 on an idle 2-core machine; on a loaded
machine two processes cannot show it (quote ``uptime`` with the figures).

    python bench/bench_federated_processes.py [--rounds 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from common import median_time, write_result

from paradigms.runner.intervals import paired

ROOT = Path(__file__).resolve().parents[1]
TASK = [
    "paradigm=federated",
    "backbone=mobilenetv3_small_050",
    "backbone.img_size=32",
    "paradigm.fraction=0.5",
    "paradigm.local_epochs=1",
    "paradigm.batch_size=32",
    "paradigm.progress=false",
]


def run(trainer: str, rounds: int, clients: int, seed: int) -> dict[str, float]:
    """One run; returns its round-loop and whole-process seconds and its test accuracy."""
    with TemporaryDirectory() as out:
        command = [sys.executable, "cli.py", f"paths.output_root={out}", *TASK,
                   f"paradigm.rounds={rounds}", f"paradigm.num_clients={clients}",
                   f"trainer={trainer}", f"seed={seed}"]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        whole = time.perf_counter() - started
        run_dir = next(Path(out).glob("federated/*/*/summary.json")).parent
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        summary = json.loads((run_dir / "summary.json").read_text())
    loop = sum(float(r["time/round_s"]) for r in rows)
    return {"loop_s": loop, "whole_s": whole, "test_acc": summary["metrics"]["test/acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20, help="smaller for a smoke run")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"cpu": [], "ddp_cpu": []}
    for seed in range(args.repeats):
        for trainer in results:  # alternating
            results[trainer].append(run(trainer, args.rounds, args.clients, seed))
            print(trainer, seed, results[trainer][-1], flush=True)
    medians = {
        trainer: {k: median_time([r[k] for r in runs]) for k in ("loop_s", "whole_s", "test_acc")}
        for trainer, runs in results.items()
    }
    one, two = medians["cpu"], medians["ddp_cpu"]
    accuracy = paired(*([r["test_acc"] for r in results[t]] for t in ("ddp_cpu", "cpu")))
    record = {
        "rounds": args.rounds,
        "repeats": args.repeats,
        "clients": args.clients,
        "load_average": os.getloadavg()[0],
        "one_process": one,
        "two_processes": two,
        "round_loop_ratio": one["loop_s"] / two["loop_s"],
        "whole_process_ratio": one["whole_s"] / two["whole_s"],
        "test_acc_two_minus_one": {"mean": accuracy.mean, "low": accuracy.low,
                                   "high": accuracy.high, "n": accuracy.n},
        "runs": results,
    }  # fmt: skip
    print(json.dumps(record, indent=2))
    write_result("federated_processes", record)


if __name__ == "__main__":
    main()
