"""Supervised training from random weights: the recipe of the scratch paradigm, of every
``compare=scratch`` baseline and of the source stage, kept here so paradigms share it
without importing one another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradigms.contract import Context, Row
from paradigms.models.backbone import count_parameters, create_model
from paradigms.models.classifier import ClassificationModule


class SupervisedRecipe:
    """Backbone + head trained from random initialisation with one optimizer and schedule.

    Config keys: optimizer (name, lr, weight_decay, momentum), scheduler (name,
    warmup_fraction, min_lr_ratio), label_smoothing, top_k.
    """

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

    def train(
        self,
        context: Context,
        stage_dir: Path,
        name: str,
        data: dict[str, Any] | None = None,
        **trainer_overrides: Any,
    ) -> Row:
        """Trains from scratch in ``stage_dir`` (exporting the best model there), on the
        configured data or with ``data`` overrides."""
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
