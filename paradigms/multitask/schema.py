"""Settings of multi-task learning, its tasks and the loss weightings that have knobs (see
``paradigms.runner.validation``). A weighting's schema has its class's name."""

from __future__ import annotations

from typing import Any

from paradigms.models.schema import Optimizer, Scheduler
from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Each, Schema, each, flag, join, number, one_of, whole

# Per task type: the losses it takes, and its metrics with the direction that is better
# (``paradigms.multitask.tasks`` builds them with torchmetrics).
LOSSES: dict[str, tuple[str, ...]] = {
    "multiclass": ("cross_entropy",),
    "binary": ("bce",),
    "multilabel": ("bce",),
    "regression": ("mse", "l1", "smooth_l1"),
}
METRICS: dict[str, dict[str, str]] = {
    "multiclass": {"acc": "max", "f1": "max"},
    "binary": {"acc": "max", "f1": "max", "auroc": "max"},
    "multilabel": {"acc": "max", "f1": "max"},
    "regression": {"mse": "min", "mae": "min"},
}


class Head(Schema):
    """A task head (or the shared neck): MLP widths and dropout."""

    hidden = each(whole(1), "[64] (or [] for a linear layer)")
    dropout = number(0, 1, open_high=True, example=0.1)


class Task(Schema):
    """One task of ``paradigm.tasks``."""

    type = one_of(*LOSSES)
    num_outputs = whole(1, example=10)
    head = Head
    weight = number(0, example=1.0)

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        kind, outputs = node.get("type"), node.get("num_outputs")

        def fail(name: str, value: Any, why: str, fix: str) -> None:
            raise ConfigError(join(at, name), value, why, fix)

        if kind not in LOSSES:
            fail("type", kind, "must be set", f"use one of {', '.join(LOSSES)}")
        if not isinstance(outputs, int):
            fail("num_outputs", outputs, "must be set", f"{at}.num_outputs=10")
        if kind == "multiclass" and outputs < 2:
            fail(
                "num_outputs", outputs, "a multiclass task has >= 2 classes", f"{at}.num_outputs=10"
            )
        if kind == "binary" and outputs != 1:
            fail("num_outputs", outputs, "a binary task has one output", f"{at}.num_outputs=1")
        if node.get("loss") not in LOSSES[kind]:
            fail("loss", node.get("loss"), f"not a {kind} loss", ", ".join(LOSSES[kind]))
        known, metrics = METRICS[kind], node.get("metrics") or []
        if not isinstance(metrics, list) or not metrics or any(m not in known for m in metrics):
            fail(
                "metrics",
                metrics,
                f"{kind} tasks offer {', '.join(known)}",
                f"{at}.metrics=[{next(iter(known))}]",
            )
        better = known[metrics[0]]
        if node.get("direction") != better:
            word = "better" if better == "max" else "worse"
            fail(
                "direction",
                node.get("direction"),
                f"higher {metrics[0]} is {word}",
                f"{at}.direction={better}",
            )


class MultiTask(Schema):
    """``conf/paradigm/multitask.yaml``."""

    tasks = Each(Task)
    neck = Head
    optimizer = Optimizer
    scheduler = Scheduler

    @classmethod
    def relations(cls, node: dict[str, Any], at: str) -> None:
        if not node.get("tasks"):
            raise ConfigError(
                join(at, "tasks"),
                node.get("tasks"),
                "multitask needs at least one task",
                "declare tasks (see conf/scenario/digits/multitask.yaml)",
            )


class DWA(Schema):
    """``conf/paradigm/weighting/dwa.yaml``."""

    temperature = number(0, open_low=True, example=2.0)


class GradNorm(Schema):
    """``conf/paradigm/weighting/gradnorm.yaml``."""

    alpha = number(0, example=1.5)
    lr = number(0, open_low=True, example=0.025)
    update = one_of("sign", "paper")


class CAGrad(Schema):
    """``conf/paradigm/weighting/cagrad.yaml``."""

    c = number(0, example=0.4)
    rescale = flag()
