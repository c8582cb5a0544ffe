"""Scale: 1,000 clients with 100 a round on this machine: seconds per round, peak memory and
what the checkpoint writes, with per-client state (SCAFFOLD's control variates) kept only for
the clients that have trained.

Digits' 1,257 training images over 1,000 IID clients (one or two images each: a model without
BatchNorm, ``test_convnext``, since BatchNorm cannot train on one image), SCAFFOLD, 10 rounds.
``--against <checkout>`` runs the same command in another checkout (e.g. one that kept a dense
``[clients, parameters]`` table) alternately, for the ratio of peak memory and time.

    python bench/bench_federated_scale.py [--clients 1000] [--fraction 0.1] [--rounds 10]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from common import ROOT, write_result


def run(root: Path, args: argparse.Namespace) -> dict[str, float]:
    """One run in checkout ``root``, under /usr/bin/time for its peak resident memory."""
    with TemporaryDirectory() as out:
        command = ["/usr/bin/time", "-f", "%M %O", sys.executable, "cli.py",
                   f"paths.output_root={out}", "paradigm=federated", "backbone.name=test_convnext",
                   "backbone.img_size=32", "paradigm/partition=iid", "paradigm/strategy=scaffold",
                   f"paradigm.num_clients={args.clients}", f"paradigm.fraction={args.fraction}",
                   f"paradigm.rounds={args.rounds}", "paradigm.progress=false",
                   "paradigm.batch_size=16", f"paradigm.engine={args.engine}"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        whole = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"failed in {root}:\n{done.stderr[-3000:]}")
        peak_kib, blocks = map(int, done.stderr.strip().splitlines()[-1].split())
        run_dir = next(Path(out).glob("federated/*/*/summary.json")).parent
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        summary = json.loads((run_dir / "summary.json").read_text())
        files = [p for p in (run_dir / "checkpoints").rglob("*") if p.is_file()]
        on_disk = sum(p.stat().st_size for p in files)
    return {
        "whole_s": whole,
        "round_s": statistics.median(float(r["time/round_s"]) for r in rows),
        "peak_mib": peak_kib / 1024,
        "checkpoint_mib": on_disk / 2**20,
        "written_mib": blocks * 512 / 2**20,  # everything the run wrote (/usr/bin/time's %O)
        "test_acc": summary["metrics"]["test/acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--engine", default="loop", choices=["loop", "vmap"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--against", type=Path, help="another checkout, run alternately")
    args = parser.parse_args()
    roots = {"this tree": ROOT} | ({"other": args.against} if args.against else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
    for _ in range(args.repeats):
        for name, root in roots.items():
            runs[name].append(run(root, args))
            print(name, runs[name][-1], flush=True)
    record = {"clients": args.clients, "fraction": args.fraction, "rounds": args.rounds,
              "engine": args.engine, "cpus": os.cpu_count()}  # fmt: skip
    for name, rs in runs.items():
        medians = {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        record[name] = medians
        print(
            f"{name}: {medians['round_s']:.2f} s a round, peak {medians['peak_mib']:.0f} MiB, "
            f"checkpoint {medians['checkpoint_mib']:.0f} MiB on disk, test acc "
            f"{medians['test_acc']:.3f}, whole {medians['whole_s']:.0f} s"
        )
    write_result("federated_scale", record)


if __name__ == "__main__":
    main()
