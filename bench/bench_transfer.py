"""Transfer vs scratch on the default digits task pair, over seeds, with 95% intervals.

Source: digits 0-4, all their training data; target: digits 5-9 with ten labels per class
(validation: ten per class as well). Each seed is one ``python cli.py paradigm=transfer
seed=S`` run (the source stage and the scratch baseline cached per seed); every model is
selected on validation and reported on test. Claim: transfer beats scratch by 15+ points,
paired by seed (``gain_vs_scratch``).

    python bench/bench_transfer.py [--seeds 0 1 2] [overrides...]
    python bench/bench_transfer.py --seeds 0 1 trainer.max_epochs=1 source.max_epochs=1  # smoke
"""

from __future__ import annotations

import time

from common import write_result
from seeded import arguments, over_seeds, report

CLAIM = "transfer"
CONFIGS = {"transfer": ["paradigm=transfer", "backbone=resnet10t", "compare=scratch"]}


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    record = report(
        "transfer vs scratch: digits 0-4 -> 5-9, 10 labels/class",
        results,
        ["val/acc", "test/acc", "scratch/val/acc", "scratch/test/acc"],
        [("transfer", "test/acc", "transfer", "scratch/test/acc")],
    )
    record |= {"claim": "transfer beats scratch by 15+ points", "seeds": args.seeds}
    record |= {"overrides": args.overrides, "wall_time_s": round(time.perf_counter() - started, 1)}
    write_result(CLAIM, record)


if __name__ == "__main__":
    main()
