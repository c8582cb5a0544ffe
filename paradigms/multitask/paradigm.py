"""Multi-task learning: one shared backbone, one head per task, losses combined by a weighting.

With ``compare=single_task`` the run also trains one model per task through the same code
(a multi-task run with one task and equal weighting), with the same backbone and budget,
and reports Delta_m%: the mean relative gain of the multi-task model over the single-task
models across every test metric, sign-corrected by its direction (Maninis et al. 2019;
Vandenhende et al. 2021). Every model is selected on validation (``val/score``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from paradigms.contract import Context, Needs, Result, Row, check_compare
from paradigms.models.backbone import count_parameters
from paradigms.multitask.model import build_model
from paradigms.multitask.module import MultiTaskModule
from paradigms.multitask.tasks import Task, metric_direction, parse_tasks
from paradigms.multitask.weighting import Equal, Weighting
from paradigms.runner.errors import ConfigError
from paradigms.runner.stage_cache import (
    cached_stage,
    read_results,
    show_in_run,
    training_definition,
    write_counts,
)
from paradigms.runner.validation import Check

COMPARISONS = ("single_task",)
TIMING = "train_time.json"

# What a gradient-based weighting (per-task gradients, manual optimization) cannot run under.
PER_TASK_GRADIENTS = {
    "precision": Check(
        lambda v: "16" not in str(v) or "bf16" in str(v),
        "per-task gradients bypass the fp16 grad scaler",
        "trainer.precision=bf16-mixed or 32-true",
    ),
    "accumulate_grad_batches": Check(
        lambda v: v in (None, 1),
        "gradient-based weightings step every batch",
        "trainer.accumulate_grad_batches=1 (raise data.batch_size)",
    ),
    "strategy": Check(
        lambda v: not any(s in str(v) for s in ("fsdp", "deepspeed")),
        "per-task gradients need whole parameters on every rank",
        "trainer.strategy=ddp",
    ),
}


def delta_m(
    tasks: list[Task], multi: dict[str, float], single: dict[str, float], split: str = "test"
) -> float:
    """Mean relative change (%) of every task metric, positive when the multi-task model is
    better; ``multi`` and ``single`` hold ``<split>/<task>/<metric>``."""
    gains = []
    for task in tasks:
        for metric in task.metrics:
            key = f"{split}/{task.name}/{metric}"
            base = single[key]
            gains.append(metric_direction(task, metric) * (multi[key] - base) / abs(base))
    return 100.0 * sum(gains) / len(gains)


class MultiTask:
    """Trains all declared tasks together on a shared timm backbone.

    Config keys: tasks (name -> type multiclass|binary|multilabel|regression, num_outputs,
    head {hidden, dropout}, loss, weight, metrics, direction), neck {hidden, dropout},
    weighting (the ``paradigm/weighting`` group: equal, static, uncertainty, dwa, gradnorm,
    pcgrad, cagrad), optimizer, scheduler. Reports ``<split>/<task>/<metric>``,
    ``<split>/score``, ``<split>/loss`` and, with single_task, ``single_task/<split>/<task>/<metric>``
    and ``<split>/delta_m_pct``, for the validation (what selected the checkpoint) and test splits. A gradient-based weighting needs a Trainer without 16-bit AMP,
    gradient accumulation or a sharded strategy. Raises ConfigError for a task the data does
    not label, or with another number of outputs.
    """

    default_compare: tuple[str, ...] = COMPARISONS

    def __init__(
        self,
        tasks: dict[str, dict[str, Any]],
        weighting: Callable[..., Weighting],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        neck: dict[str, Any] | None = None,
    ) -> None:
        self.task_specs = tasks
        self.weighting = weighting
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.neck = neck or {}

    @property
    def weighting_class(self) -> type[Weighting]:
        """The weighting's class (the config gives a partial, built once per model)."""
        return getattr(self.weighting, "func", self.weighting)

    @property
    def needs(self) -> Needs:
        return Needs(trainer=PER_TASK_GRADIENTS if self.weighting_class.manual else {})

    def reports(self, compare: list[str]) -> list[str]:
        check_compare("multitask", compare, COMPARISONS)
        tasks = parse_tasks(self.task_specs)
        reported = []
        for split in ("val", "test"):
            keys = [f"{split}/{t.name}/{m}" for t in tasks for m in t.metrics]
            reported += [*keys, f"{split}/score", f"{split}/loss"]
            if compare:
                reported += [f"single_task/{k}" for k in keys] + [f"{split}/delta_m_pct"]
        return reported

    def run(self, context: Context) -> Result:
        tasks = parse_tasks(self.task_specs)
        kind = self.weighting_class
        clip = _manual_clipping(context.stages.trainer) if kind.manual else {}
        self._check_data(context, tasks)
        row, seconds = self._train(context, tasks, self.weighting, context.run_dir, clip)
        rows = [Row(f"multitask ({kind.__name__.lower()})", *_fields(row))]
        metrics = {**row.metrics, "params/multitask": row.total_params, "time_s/multitask": seconds}
        notes = [f"multitask training time: {seconds:.1f} s"]
        if "single_task" in context.compare:
            single, params, total_seconds = {}, 0, 0.0
            for task in tasks:
                one, spent = self._single_task(context, task, clip)
                rows.append(Row(f"single-task {task.name}", *_fields(one)))
                single |= {
                    k: v
                    for k, v in one.metrics.items()
                    if k.startswith((f"val/{task.name}/", f"test/{task.name}/"))
                }
                params += one.total_params or 0
                total_seconds += spent
            metrics |= {f"single_task/{k}": v for k, v in single.items()}
            for split in ("val", "test"):
                metrics[f"{split}/delta_m_pct"] = delta_m(tasks, row.metrics, single, split)
            metrics |= {"params/single_task_sum": params, "time_s/single_task_sum": total_seconds}
            notes = [
                f"Delta_m = {metrics['test/delta_m_pct']:+.2f}% (multitask vs single-task, "
                "mean relative gain over every test metric, sign-corrected; selected on val)",
                f"parameters: multitask {row.total_params:,} vs single-task sum {params:,}",
                f"training time: multitask {seconds:.1f} s vs single-task sum {total_seconds:.1f} s",
            ]
        return Result(metrics, rows, notes)

    def _check_data(self, context: Context, tasks: list[Task]) -> None:
        """Every task must be one the data labels, with the number of outputs it has."""
        outputs = context.datamodule({"tasks": [t.name for t in tasks]}).task_outputs
        for task in tasks:
            if task.name not in outputs:
                raise ConfigError(
                    "paradigm.tasks",
                    task.name,
                    "the data has no such label",
                    f"use {', '.join(outputs)}",
                )
            if outputs[task.name] not in (None, task.num_outputs):  # None: the data cannot tell
                raise ConfigError(
                    f"paradigm.tasks.{task.name}.num_outputs",
                    task.num_outputs,
                    f"the data's {task.name} label has {outputs[task.name]}",
                    f"paradigm.tasks.{task.name}.num_outputs={outputs[task.name]}",
                )

    def _single_task(self, context: Context, task: Task, clip: dict[str, Any]) -> tuple[Row, float]:
        """The single-task baseline of ``task``, shown in ``compare/single_task/<task>``: trained
        once per definition and cached (``paradigms.runner.stage_cache``), from the run's
        seed, so a sweep over weightings trains each task's model once."""
        stages = context.stages
        definition = {
            "backbone": context.backbone,
            "data": context.data,
            "task": self.task_specs[task.name],
            "neck": self.neck,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "clip": clip,
            "seed": context.seed,
            **training_definition(stages.trainer, stages.callbacks, stages.nonfinite),
        }

        def train(work: Path) -> None:
            pl.seed_everything(context.seed, workers=True, verbose=False)
            row, _ = self._train(context, [task], Equal, work, clip)
            write_counts(work, row.trainable_params, row.total_params)

        stage = cached_stage(context.cache_dir, "single_task", definition, context.run_dir, train)
        show_in_run(stage, context.run_dir / "compare" / "single_task" / task.name)
        seconds = json.loads((stage / TIMING).read_text())["seconds"]
        return Row("", *read_results(stage)), seconds

    def _train(
        self,
        context: Context,
        tasks: list[Task],
        weighting: Callable[..., Weighting],
        stage_dir: Path,
        clip: dict[str, Any],
    ) -> tuple[Row, float]:
        """Trains one model on ``tasks`` in ``stage_dir``; returns its row and training time."""
        datamodule = context.datamodule({"tasks": [t.name for t in tasks]})
        datamodule.setup("fit")
        model = build_model(context.backbone, tasks, self.neck)
        scheme = weighting(weights=[t.weight for t in tasks])
        module = MultiTaskModule(model, tasks, scheme, self.optimizer, self.scheduler, clip)
        overrides = {"gradient_clip_val": None} if scheme.manual else {}
        meta = {"backbone": context.backbone, "tasks": self.task_specs, "neck": self.neck}
        clock, started = stage_dir / TIMING, time.perf_counter()
        metrics = context.stages.fit_and_test(
            module, datamodule, stage_dir, "val/score", "max", meta, **overrides
        )
        if clock.is_file():
            seconds = json.loads(clock.read_text())["seconds"]
        else:
            seconds = time.perf_counter() - started
            if rank_zero_only.rank == 0:
                clock.write_text(json.dumps({"seconds": seconds}))
        return Row("", metrics, *count_parameters(model)), seconds


def _manual_clipping(trainer: dict[str, Any]) -> dict[str, Any]:
    """The clipping a gradient-based weighting applies itself (manual optimization turns
    Lightning's off)."""
    return {
        "gradient_clip_val": trainer.get("gradient_clip_val"),
        "gradient_clip_algorithm": trainer.get("gradient_clip_algorithm"),
    }


def _fields(row: Row) -> tuple[dict[str, float], int | None, int | None]:
    """A table row's values: the task metrics and score, without the losses."""
    shown = {k: v for k, v in row.metrics.items() if not k.endswith("loss")}
    return shown, row.trainable_params, row.total_params
