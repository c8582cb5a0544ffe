"""Tasks of a multi-task run, declared in config: type, outputs, head, loss, metrics, direction.

Labels arrive with missing ones marked as ``datamodules.labels`` says (NaN in float labels,
``IGNORE`` in class indices); every loss and metric skips those samples, so a task labelled
on a fraction of the data trains on that fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as tmc
from torchmetrics import regression as tmr

from datamodules.labels import is_missing

METRICS: dict[str, dict[str, Any]] = {
    "multiclass": {
        "acc": lambda n: tmc.MulticlassAccuracy(n, average="micro"),
        "f1": lambda n: tmc.MulticlassF1Score(n, average="macro"),
    },
    "binary": {
        "acc": lambda n: tmc.BinaryAccuracy(),
        "f1": lambda n: tmc.BinaryF1Score(),
        "auroc": lambda n: tmc.BinaryAUROC(),
    },
    "multilabel": {
        "acc": lambda n: tmc.MultilabelAccuracy(n),
        "f1": lambda n: tmc.MultilabelF1Score(n),
    },
    "regression": {
        "mse": lambda n: tmr.MeanSquaredError(),
        "mae": lambda n: tmr.MeanAbsoluteError(),
    },
}


@dataclass
class Task:
    """One task: ``metrics[0]`` is its primary metric, better in ``direction`` (max | min)."""

    name: str
    type: str
    num_outputs: int
    loss: str
    metrics: list[str]
    direction: str
    weight: float = 1.0
    head: dict[str, Any] = field(default_factory=dict)

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        """Samples whose label is present (a multi-output label counts when all of it is)."""
        missing = is_missing(target)
        return ~(missing.flatten(1).any(1) if target.dim() > 1 else missing)

    def _select(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.valid(target)
        logits, target = logits[keep], target[keep]
        if self.type == "multiclass":
            return logits, target.long()
        return logits.reshape(target.shape).float(), target.float()

    def loss_value(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the labelled samples; an exact zero (still in the graph) when none."""
        logits_kept, target_kept = self._select(logits, target)
        if len(target_kept) == 0:
            return logits.sum() * 0.0
        if self.loss == "cross_entropy":
            return F.cross_entropy(logits_kept, target_kept)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits_kept, target_kept)
        return {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}[self.loss](
            logits_kept, target_kept
        )

    def update(self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Updates ``metrics`` with the labelled samples only."""
        logits, target = self._select(logits.detach(), target)
        if len(target) == 0:
            return
        if self.type in ("binary", "multilabel"):
            metrics.update(torch.sigmoid(logits), target.long())
        else:
            metrics.update(logits, target)

    def metric_collection(self, prefix: str) -> MetricCollection:
        build = METRICS[self.type]
        return MetricCollection(
            {name: build[name](self.num_outputs) for name in self.metrics}, prefix=prefix
        )


def parse_tasks(specs: dict[str, dict[str, Any]]) -> list[Task]:
    """Tasks from ``paradigm.tasks`` (name -> spec), as its schema
    (``paradigms.multitask.schema.Task``) has checked them."""
    return [
        Task(
            name,
            spec["type"],
            spec["num_outputs"],
            spec["loss"],
            list(spec["metrics"]),
            spec["direction"],
            float(spec.get("weight", 1.0)),
            spec.get("head") or {},
        )
        for name, spec in specs.items()
    ]


def metric_direction(task: Task, metric: str) -> int:
    """+1 when a higher ``metric`` is better, -1 when lower is."""
    metric_obj: Metric = METRICS[task.type][metric](max(task.num_outputs, 2))
    return 1 if metric_obj.higher_is_better else -1
