"""Supervised training from random weights: the baseline every other paradigm is compared to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradigms.backbone import count_parameters, create_model
from paradigms.classifier import ClassificationModule, reported_metrics
from paradigms.contract import Context, Result, Row
from paradigms.errors import ConfigError


class Scratch:
    """Trains backbone + head from random initialisation on the configured data.

    Config keys: optimizer (name, lr, weight_decay, momentum), scheduler (name,
    warmup_fraction, min_lr_ratio), label_smoothing, top_k. Raises ConfigError when
    ``backbone.weights`` names pretrained weights (that is fine-tuning) or ``compare`` asks
    for a baseline (scratch is the baseline).
    """

    default_compare: tuple[str, ...] = ()

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    def reports(self, compare: list[str]) -> list[str]:
        return reported_metrics(self.top_k, [""])

    def run(self, context: Context) -> Result:
        if context.backbone.get("weights") not in (None, "none"):
            raise ConfigError(
                "backbone.weights",
                context.backbone["weights"],
                "scratch trains from random weights",
                "use paradigm=finetune to start from pretrained weights",
            )
        if context.compare:
            raise ConfigError(
                "compare", context.compare, "scratch is itself the baseline", "use compare=none"
            )
        row = self.train(context, context.run_dir, "scratch")
        return Result(metrics=row.metrics, rows=[row])

    def train(
        self,
        context: Context,
        stage_dir: Path,
        name: str,
        data: dict[str, Any] | None = None,
        **trainer_overrides: Any,
    ) -> Row:
        """Trains from scratch in ``stage_dir`` (exporting the best model there), on the
        configured data or with ``data`` overrides; also the baseline and source stage of others."""
        datamodule = context.datamodule(data)
        datamodule.setup("fit")
        spec = {**context.backbone, "weights": "none"}
        model = create_model(spec, datamodule.num_classes)
        trainable, total = count_parameters(model)
        module = ClassificationModule(
            model,
            datamodule.num_classes,
            self.optimizer,
            self.scheduler,
            self.label_smoothing,
            self.top_k,
        )
        meta = {"backbone": spec, "num_classes": datamodule.num_classes, "data": data or {}}
        metrics = context.stages.fit_and_test(
            module, datamodule, stage_dir, meta=meta, **trainer_overrides
        )
        return Row(name, metrics, trainable, total)
