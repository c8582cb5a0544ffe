"""Does distillation help a small student? KD student vs the student alone, over seeds.

On digits the teacher (resnet10t) learns from every training label; the student (test_resnet)
and its student-alone baseline have ten labels per class (validation: ten per class as
well). Each seed is one ``python cli.py paradigm=distill seed=S`` run (the teacher's stage and
the student-alone baseline cached per seed); every model is selected on validation and
reported on test. Claim: the KD student beats the student alone, paired by seed.

    python bench/bench_distill.py [--seeds 0 1 2] [overrides...]
    python bench/bench_distill.py --seeds 0 1 trainer.max_epochs=1 paradigm.teacher_source.max_epochs=1
"""

from __future__ import annotations

import time

from seeded import arguments, over_seeds, record_run, report

CLAIM = "distill"
CONFIGS = {
    "distill": [
        "paradigm=distill",
        "backbone=test_resnet",
        "paradigm.teacher.name=resnet10t",
        "trainer.max_epochs=30",
        "compare=scratch",
    ]
}


def main() -> None:
    args = arguments(__doc__, CLAIM, CONFIGS).parse_args()
    started = time.perf_counter()
    results = over_seeds(CONFIGS, args)
    record = report(
        "distillation on digits: test_resnet student (10 labels/class), resnet10t teacher",
        results,
        ["val/acc", "test/acc", "scratch/test/acc", "teacher/test/acc", "test/agreement"],
        [("distill", "test/acc", "distill", "scratch/test/acc")],
    )
    record_run(CLAIM, record, args, started)


if __name__ == "__main__":
    main()
