"""Fine-tuning: a pretrained model updated on new data.

The base model comes from ``paradigms.source`` (the user's weights, the hub, or a cached
source stage). Its head is kept when the label space is the same and replaced only when it
differs. Every layer is updated with one learning rate.
"""

from __future__ import annotations

from typing import Any

from paradigms.backbone import count_parameters, create_pretrained
from paradigms.classifier import ClassificationModule, reported_metrics
from paradigms.contract import Context, Result, Row
from paradigms.errors import ConfigError
from paradigms.scratch import Scratch
from paradigms.source import base_weights

COMPARISONS = ("scratch",)


class Finetune:
    """Fine-tunes all layers of a pretrained model on the target data.

    Config keys: optimizer, scheduler, label_smoothing, top_k (as scratch), baseline (a
    ``Scratch`` recipe: how the ``compare=scratch`` model and the source stage are trained).
    Reports ``test/*`` of the fine-tuned model, ``source/test/*`` (the base model before fine-tuning, when its head
    fits) and ``scratch/test/*``. Raises ConfigError for ``backbone.weights=none``, a
    missing weights file, or an unknown comparison.
    """

    default_compare: tuple[str, ...] = ("scratch",)

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        baseline: Scratch,
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.baseline = baseline
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    def reports(self, compare: list[str]) -> list[str]:
        unknown = [c for c in compare if c not in COMPARISONS]
        if unknown:
            raise ConfigError(
                "compare",
                unknown[0],
                "finetune compares with: scratch",
                "use compare=scratch or none",
            )
        return reported_metrics(self.top_k, ["", "source/", *(f"{c}/" for c in compare)])

    def run(self, context: Context) -> Result:
        weights = base_weights(context, "finetune", self.baseline)
        datamodule = context.datamodule()
        datamodule.setup("fit")
        model, head_kept = create_pretrained(
            {**context.backbone, "weights": weights}, datamodule.num_classes
        )
        trainable, total = count_parameters(model)
        module = ClassificationModule(
            model,
            datamodule.num_classes,
            self.optimizer,
            self.scheduler,
            self.label_smoothing,
            self.top_k,
        )
        rows, metrics = [], {}
        if head_kept:
            source = context.stages.test_only(
                module, datamodule, context.run_dir / "compare" / "source"
            )
            rows.append(Row("source (before fine-tuning)", source, 0, total))
            metrics.update({f"source/{k}": v for k, v in source.items()})
        tuned = context.stages.fit_and_test(module, datamodule, context.run_dir)
        rows.append(Row("finetune", tuned, trainable, total))
        metrics.update(tuned)
        if "scratch" in context.compare:
            row = self.baseline.train(context, context.run_dir / "compare" / "scratch", "scratch")
            rows.append(row)
            metrics.update({f"scratch/{k}": v for k, v in row.metrics.items()})
        return Result(metrics, rows)
