"""Supervised training from random weights: the recipe of the scratch paradigm, of every
``compare=scratch`` baseline and of the source stage, kept here so paradigms share it
without importing one another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from paradigms.contract import Context, Row
from paradigms.models.backbone import count_parameters, create_model, data_class_names
from paradigms.models.classifier import ClassificationModule
from paradigms.runner.stage_cache import (
    cached_stage,
    read_results,
    show_in_run,
    training_definition,
    write_counts,
)

BASELINE = ("compare", "scratch")  # where a run shows its compare=scratch model


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
        meta = {
            "backbone": spec,
            "num_classes": datamodule.num_classes,
            "class_names": data_class_names(datamodule),
            "data": data or {},
        }
        metrics = context.stages.fit_and_test(
            module, datamodule, stage_dir, meta=meta, **trainer_overrides
        )
        return Row(name, metrics, trainable, total)

    def baseline(self, context: Context, name: str) -> tuple[Row, Path]:
        """The run's ``compare=scratch`` model, shown in ``<run dir>/compare/scratch``:
        trained once per definition (backbone, data, recipe, training setup, seed) and cached
        (``paradigms.runner.stage_cache``), from the run's seed, so a sweep over a paradigm's
        own settings trains it once and every job gets the very model a fresh training gives.
        Returns its row and the cached stage's directory (its ``model.safetensors``)."""
        stages = context.stages
        definition = {
            "backbone": {**context.backbone, "weights": "none"},
            "data": context.data,
            "recipe": vars(self),
            "seed": context.seed,
            **training_definition(stages.trainer, stages.callbacks, stages.nonfinite),
        }

        def train(work: Path) -> None:
            pl.seed_everything(context.seed, workers=True, verbose=False)
            row = self.train(context, work, name)
            write_counts(work, row.trainable_params, row.total_params)

        stage = cached_stage(context.cache_dir, "scratch", definition, context.run_dir, train)
        show_in_run(stage, context.run_dir.joinpath(*BASELINE))
        return Row(name, *read_results(stage)), stage
