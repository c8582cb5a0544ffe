"""Settings of the run itself and of the runner's components, checked before torch loads
(see ``paradigms.runner.validation``)."""

from __future__ import annotations

import re
from typing import Any

from paradigms.models.schema import Backbone
from paradigms.runner.run_dirs import find_run_dir, resumes_saved_run
from paradigms.runner.validation import Check, Schema, flag, number, one_of, optional, whole


class Trainer(Schema):
    """The Lightning Trainer flags this tool sets (``conf/trainer/``)."""

    max_epochs = whole(1, example=10)
    accumulate_grad_batches = whole(1, example=1)
    num_nodes = whole(1, example=1)
    log_every_n_steps = whole(1, example=10)
    check_val_every_n_epoch = whole(1, example=1)
    num_sanity_val_steps = whole(0, example=0)
    gradient_clip_val = optional(number(0, open_low=True, example=1.0))
    deterministic = flag()
    benchmark = flag()


class Accelerate(Schema):
    """``callbacks.accelerate``: the GPU speed knobs."""

    compile = flag()
    compile_mode = one_of(
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    )
    channels_last = one_of("auto", True, False)
    tf32 = flag()


class ModelSummary(Schema):
    """``callbacks.rich_model_summary``: the model summary at the first fit."""

    max_depth = whole(0, example=1)


class OptunaPruning(Schema):
    """``callbacks.optuna_pruning`` (conf/hparams_search/): the metric a pruner compares."""

    monitor = Check(
        lambda v: isinstance(v, str) and bool(re.fullmatch(r"([\w-]+/)*val/\w+", v)),
        "must be a validation metric logged every epoch, like val/acc",
        "{key}=val/acc",
    )


class Source(Schema):
    """``source``: the related task a source stage trains on (set by a scenario)."""

    max_epochs = whole(1, example=15)


def _resumable(value: Any) -> bool:
    return not resumes_saved_run(value) or find_run_dir(str(value)) is not None


class Run(Schema):
    """The top of the config: what every run has, whatever its paradigm."""

    seed = whole(0, example=0)
    nonfinite = one_of("stop", "skip")
    threads = Check(
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "must be auto or a whole number >= 1",
        "threads=auto (or a count, e.g. threads=4)",
    )
    debug = flag()
    verbose = flag()
    optimized_metric = Check(
        lambda v: isinstance(v, str) and bool(re.fullmatch(r"([\w-]+/)*(val|test)/\w+", v)),
        "must look like [stage/]val|test/<metric>",
        "optimized_metric=test/acc",
    )
    resume = Check(
        _resumable,
        "not a run directory of this tool (no .hydra/config.yaml above it)",
        "give outputs/<paradigm>/<date>/<time>_<id>, a checkpoint inside it, or auto",
    )
    trainer = Trainer
    backbone = Backbone
    source = Source
