"""Compression: accuracy after 30 rounds and MiB uploaded and downloaded, over seeds.

Uploads none (float32), fp16, int8 (per-tensor scale, stochastic rounding) and top_k 1% with
error feedback; then int8 uploads with fp16 and with int8 downloads (``paradigm/download``), on
digits in the default federated scenario (Dirichlet clients, 20 of them, half per
round, 1 local epoch, test_resnet at 16 px). Each (codec, seed) is one ``python cli.py
paradigm=federated paradigm/compression=C seed=S`` run; prints the test accuracy of the round
selected on validation, the last round's validation accuracy and the MiB all clients uploaded
and downloaded over the run (mean ± 95% interval over seeds), and each codec's test accuracy against none,
paired by seed.

    python bench/bench_federated_compression.py [--seeds 0 1 2] [--only none,int8] [overrides...]
    python bench/bench_federated_compression.py --seeds 0 paradigm.rounds=2  # smoke
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from seeded import arguments, over_seeds, record_run, report

CLAIM = "federated_compression"
COMMON = ["paradigm=federated", "backbone=test_resnet", "paradigm.progress=false"]
CODECS = {
    "none": ["paradigm/compression=none"],
    "fp16": ["paradigm/compression=fp16"],
    "int8": ["paradigm/compression=int8"],
    "top_k-1%": ["paradigm/compression=top_k", "paradigm.compression.fraction=0.01"],
    "int8+down-fp16": ["paradigm/compression=int8", "paradigm/download=fp16"],
    "int8+down-int8": ["paradigm/compression=int8", "paradigm/download=int8"],
}
CONFIGS = {name: [*COMMON, *codec, "paradigm.rounds=30"] for name, codec in CODECS.items()}


def rounds(run_root: Path) -> list[dict[str, str]]:
    """The rounds of the run under ``run_root`` (its metrics.csv)."""
    metrics = sorted(run_root.glob("*/*/*/metrics.csv"))[-1]
    return list(csv.DictReader(metrics.open()))


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    for label, summaries in results.items():
        for seed, run in zip(args.seeds, summaries, strict=True):
            history = rounds(args.work / label / f"seed{seed}")
            run["metrics"]["final/val_acc"] = float(history[-1]["val/acc"])
            run["metrics"]["up/MiB"] = sum(float(r["bytes/up"]) for r in history) / 2**20
            run["metrics"]["down/MiB"] = sum(float(r["bytes/down"]) for r in history) / 2**20
    record = report(
        "compression on digits: 20 Dirichlet clients, fraction 0.5, 1 local epoch",
        results,
        ["test/acc", "final/val_acc", "up/MiB", "down/MiB"],
        [(codec, "test/acc", "none", "test/acc") for codec in CODECS if codec != "none"],
    )
    record_run(CLAIM, record, args, started)


if __name__ == "__main__":
    main()
