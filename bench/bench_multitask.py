"""Multi-task weightings vs single-task models on multi-label digits (Delta_m%), over seeds.

Each (weighting, seed) is one ``python cli.py paradigm=multitask paradigm/weighting=W seed=S
compare=single_task`` run: the single-task models (one per task, same backbone and budget)
are cached per seed, so they train once and every weighting is compared with the same ones.
Every model is selected on validation (``val/score``) and reported on test; Delta_m% is the
mean relative gain over every test metric against that seed's single-task models (Maninis et
al. 2019). Prints mean ± 95% interval over seeds, and each weighting's test/score minus
equal weighting's, paired by seed.

    python bench/bench_multitask.py [--seeds 0 1 2] [--only equal,pcgrad] [overrides...]
    python bench/bench_multitask.py --seeds 0 1 --only equal,dwa trainer.max_epochs=1  # smoke
"""

from __future__ import annotations

import time

from seeded import arguments, over_seeds, record_run, report

CLAIM = "multitask"
METHODS = ("equal", "static", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad")
CONFIGS = {
    m: [
        "paradigm=multitask",
        f"paradigm/weighting={m}",
        "backbone=test_resnet",
        "trainer.max_epochs=20",
        "compare=single_task",
        "logger=csv",
    ]
    for m in METHODS
}
COLUMNS = ["val/score", "test/score", "test/digit/acc", "test/rotation/acc", "test/parity/acc"]


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    pairs = [(m, "test/score", "equal", "test/score") for m in results if m != "equal"]
    record = report(
        "multitask weightings on digits (digit, rotation, parity)",
        results,
        [*COLUMNS, "test/delta_m_pct"],
        pairs,
    )
    record_run(CLAIM, record, args, started)


if __name__ == "__main__":
    main()
