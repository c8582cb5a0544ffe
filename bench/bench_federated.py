"""FedAvg under IID and non-IID clients, and FedProx / SCAFFOLD under shards, over seeds.

Digits, 20 clients, half of them per round, 1 local epoch, test_resnet at 16 px (the default
federated scenario). Each (case, seed) is one ``python cli.py paradigm=federated seed=S`` run;
prints the final global model's test accuracy as mean ± 95% interval over seeds, and each
non-IID fix against FedAvg under shards, paired by seed. Each run selects its round on the
server's validation split and tests that round's model once.

    python bench/bench_federated.py [--seeds 0 1 2] [--only shards-fedavg,shards-fedprox] [overrides...]
    python bench/bench_federated.py --seeds 0 1 --only iid-fedavg paradigm.rounds=2  # smoke
"""

from __future__ import annotations

import time

from seeded import arguments, over_seeds, record_run, report

CLAIM = "federated"
COMMON = ["paradigm=federated", "backbone=test_resnet", "paradigm.progress=false"]
CASES = {
    "iid-fedavg": ["paradigm/partition=iid", "paradigm/strategy=fedavg"],
    "dirichlet-fedavg": ["paradigm/partition=dirichlet", "paradigm/strategy=fedavg"],
    "shards-fedavg": ["paradigm/partition=shards", "paradigm/strategy=fedavg"],
    "shards-fedprox": ["paradigm/partition=shards", "paradigm/strategy=fedprox"],
    "shards-scaffold": ["paradigm/partition=shards", "paradigm/strategy=scaffold"],
}
CONFIGS = {name: [*COMMON, *case, "paradigm.rounds=30"] for name, case in CASES.items()}


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    record = report(
        "federated on digits: 20 clients, fraction 0.5, 1 local epoch, 30 rounds",
        results,
        ["val/acc", "test/acc"],
        [
            ("iid-fedavg", "test/acc", "shards-fedavg", "test/acc"),
            ("shards-fedprox", "test/acc", "shards-fedavg", "test/acc"),
            ("shards-scaffold", "test/acc", "shards-fedavg", "test/acc"),
        ],
    )
    record_run(CLAIM, record, args, started)


if __name__ == "__main__":
    main()
