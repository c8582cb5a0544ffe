"""Fine-tuning methods under a domain shift (LP-FT vs full and the rest) vs scratch, over seeds.

Source: clean digits, all labels; target: the same ten digits rotated and noisy, ten labels
per class (validation: ten per class as well; the default finetune scenario). Each (method,
seed) is one ``python cli.py paradigm=finetune paradigm/method=M seed=S compare=scratch`` run:
the runs of a seed share its cached source stage and its cached scratch baseline, every model
is selected on validation and reported on test. Claims: every method beats scratch; LP-FT
beats full fine-tuning under shift (Kumar et al. 2022), both paired by seed.

    python bench/bench_finetune_methods.py [--seeds 0 1 2] [--only full,lp_ft] [overrides...]
"""

from __future__ import annotations

import time

from seeded import arguments, over_seeds, record_run, report

CLAIM = "finetune_methods"
METHODS = ("full", "partial", "lp_ft", "gradual", "lora")
CONFIGS = {
    m: ["paradigm=finetune", f"paradigm/method={m}", "backbone=resnet10t", "compare=scratch"]
    for m in METHODS
}


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    pairs = [(m, "test/acc", m, "scratch/test/acc") for m in results]
    pairs.append(("lp_ft", "test/acc", "full", "test/acc"))
    record = report(
        "fine-tuning methods: clean digits -> rotated+noisy digits, 10 labels/class",
        results,
        ["val/acc", "test/acc", "source/test/acc", "scratch/test/acc"],
        pairs,
    )
    record_run(CLAIM, record, args, started)


if __name__ == "__main__":
    main()
