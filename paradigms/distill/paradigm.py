"""Knowledge distillation: a small student learns from a larger, frozen teacher's soft targets.

The teacher is a backbone spec of its own (``paradigm.teacher``). With no weights given, it is
trained first by the shared source stage (``paradigms.models.source``: cached, reused by the next
run) on ``teacher_source.data`` overrides of the run's data. The student is the run's
``backbone``. See ``paradigms.distill.module`` for the loss and the frozen teacher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from torch import nn

from paradigms.contract import Because, Context, Needs, Result, Row, check_compare
from paradigms.distill.module import (
    DistillationModule,
    Teacher,
    TeacherInput,
    agreement,
    cache_teacher_outputs,
    ms_per_image,
    with_transfer_set,
)
from paradigms.models.augmentation import random_inputs
from paradigms.models.backbone import (
    EXPORT_WEIGHTS,
    count_parameters,
    create_model,
    create_pretrained,
    data_class_names,
    load_weights,
)
from paradigms.models.classifier import SELECTED, ClassificationModule, reported_metrics
from paradigms.models.leakage import check_no_leakage
from paradigms.models.recipe import SupervisedRecipe
from paradigms.models.source import base_weights
from paradigms.runner.errors import ConfigError

COMPARISONS = ("scratch",)
KEY = "paradigm.teacher"


@contextmanager
def teacher_errors() -> Iterator[None]:
    """Names ``paradigm.teacher.*`` in errors that the shared backbone code raises about
    ``backbone.*``, since here they are about the teacher's spec."""
    try:
        yield
    except ConfigError as error:
        if not error.key.startswith("backbone."):
            raise
        rename = lambda text: text.replace("backbone.", f"{KEY}.")  # noqa: E731
        raise ConfigError(rename(error.key), error.value, error.why, rename(error.fix)) from error


class Distill:
    """Trains the run's backbone (the student) with Hinton KD from a frozen teacher.

    Config keys: teacher (a backbone spec: name, weights none|timm|file|run dir|.ckpt, in_chans,
    img_size, mean/std it expects, null meaning the data's), teacher_source (data overrides
    and max_epochs of the cached stage that trains the teacher when teacher.weights is null),
    temperature, alpha (CE weight; KD gets 1 - alpha), feature_weight (0 turns the pooled
    feature term off), cache_teacher (teacher outputs computed once on the un-augmented
    training data), transfer_data (overrides of `data` whose training images the student
    also distils on, unlabelled: Hinton's transfer set; null: none), optimizer, scheduler,
    label_smoothing, top_k, baseline (a ``SupervisedRecipe``: the compare=scratch student and
    the teacher's stage).
    Reports the student's ``test/*``, ``teacher/test/*``, ``scratch/test/*``, agreement with
    the teacher, parameter counts and ms per image. Caching and a transfer set need the data
    in memory as tensors. Raises ConfigError for a teacher without trained weights, a teacher
    whose head does not fit the classes, different input channels, or cache_teacher with
    randomly augmented training data.
    """

    default_compare: tuple[str, ...] = COMPARISONS

    def __init__(
        self,
        teacher: dict[str, Any],
        teacher_source: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        baseline: SupervisedRecipe,
        temperature: float = 4.0,
        alpha: float = 0.5,
        feature_weight: float = 0.0,
        cache_teacher: bool = True,
        transfer_data: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        self.teacher = teacher
        self.teacher_source = teacher_source
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.baseline = baseline
        self.temperature = temperature
        self.alpha = alpha
        self.feature_weight = feature_weight
        self.cache_teacher = cache_teacher
        self.transfer_data = transfer_data
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    @property
    def needs(self) -> Needs:
        """Caching the teacher's outputs and a transfer set both extend the training split
        held in memory as tensors."""
        if self.cache_teacher:
            why = "caching the teacher's outputs extends the training split held as tensors"
            return Needs(Because("paradigm.cache_teacher", why, "paradigm.cache_teacher=false"))
        if self.transfer_data is not None:
            why = "a transfer set extends the training split held as tensors"
            return Needs(Because("paradigm.transfer_data", why, "paradigm.transfer_data=null"))
        return Needs()

    def reports(self, compare: list[str]) -> list[str]:
        check_compare("distill", compare, COMPARISONS)
        stages = ["", "teacher/", *(f"{c}/" for c in compare)]
        extra = [f"{s}test/{k}" for s in stages for k in ("agreement", "ms_per_image")]
        return reported_metrics(self.top_k, stages, SELECTED) + [
            e for e in extra if e != "teacher/test/agreement"
        ]

    def run(self, context: Context) -> Result:
        datamodule = context.datamodule()
        self.check_cache(datamodule)
        datamodule.setup("fit")
        classes = datamodule.num_classes
        teacher, teacher_params = self.build_teacher(context, classes, data_class_names(datamodule))
        # the student's initialisation must not depend on whether the teacher came from the cache
        pl.seed_everything(context.seed, workers=True, verbose=False)
        student = create_model(context.backbone, classes)
        student_trainable, student_total = count_parameters(student)
        module = DistillationModule(
            student,
            teacher,
            classes,
            self.optimizer,
            self.scheduler,
            self.temperature,
            self.alpha,
            self.feature_weight,
            context.data.get("image_size", context.backbone.get("img_size", 32)),
            context.backbone.get("in_chans", 3),
            self.label_smoothing,
            self.top_k,
        )
        self.prepare_training_data(context, module, datamodule)
        judge = ClassificationModule(
            teacher, classes, self.optimizer, self.scheduler, top_k=self.top_k
        )
        judged = context.stages.test_only(
            judge, datamodule, context.run_dir / "compare" / "teacher"
        )
        batches = list(datamodule.test_dataloader())
        judged["test/ms_per_image"] = ms_per_image(teacher, batches)
        rows = [Row("teacher", judged, 0, teacher_params)]
        meta = {"backbone": context.backbone, "num_classes": classes, "teacher": self.teacher}
        student_metrics = context.stages.fit_and_test(
            module, datamodule, context.run_dir, meta=meta
        )
        load_weights(student, context.run_dir / EXPORT_WEIGHTS)  # the best student, also on resume
        student_metrics.update(self.measure(student, teacher, batches, classes))
        rows.append(Row("student + KD", student_metrics, student_trainable, student_total))
        metrics = {**student_metrics, **{f"teacher/{k}": v for k, v in judged.items()}}
        if "scratch" in context.compare:
            row, stage = self.baseline.baseline(context, "student alone")
            alone = create_model({**context.backbone, "weights": str(stage)}, classes)
            row.metrics.update(self.measure(alone, teacher, batches, classes))
            rows.append(row)
            metrics.update({f"scratch/{k}": v for k, v in row.metrics.items()})
        notes = [
            f"KD: T={self.temperature}, alpha={self.alpha}, feature_weight={self.feature_weight}; "
            f"teacher/student parameters: {teacher_params / student_total:.1f}x"
        ]
        return Result(metrics, rows, notes)

    def check_cache(self, datamodule: Any) -> None:
        """Stops before the teacher trains when its outputs, cached once on the training
        images, would not be those of the images the student sees (random augmentation)."""
        varying = random_inputs(datamodule) if self.cache_teacher else None
        if varying:
            raise ConfigError(
                "paradigm.cache_teacher",
                True,
                f"{varying}, so teacher outputs cached on the plain images would not match "
                "the student's inputs",
                "paradigm.cache_teacher=false (the teacher runs on every augmented batch), "
                "or train without random augmentation (e.g. data.translate=0)",
            )

    def build_teacher(
        self, context: Context, num_classes: int, class_names: list[str] | None = None
    ) -> tuple[Teacher, int]:
        """The frozen teacher behind its input bridge, trained first when it has no weights; its
        head must fit the data's classes (their names, where both sides record them)."""
        spec = self.teacher
        if spec.get("in_chans", 3) != context.backbone.get("in_chans", 3):
            raise ConfigError(
                f"{KEY}.in_chans",
                spec.get("in_chans", 3),
                "the teacher must see the student's input channels",
                f"{KEY}.in_chans={context.backbone.get('in_chans', 3)}",
            )
        mean, std = context.data.get("mean", 0.0), context.data.get("std", 1.0)
        teacher_mean = mean if spec.get("mean") is None else spec["mean"]
        teacher_std = std if spec.get("std") is None else spec["std"]
        size = spec.get("img_size", context.data.get("image_size"))
        with teacher_errors():
            weights = base_weights(
                self.teacher_context(context, teacher_mean, teacher_std, size),
                "distillation's teacher",
                self.baseline,
                f"{KEY}.teacher_source.data",
            )
            model, head_kept = create_pretrained(
                {**spec, "weights": weights}, num_classes, class_names
            )
        if not head_kept:
            raise ConfigError(
                f"{KEY}.weights",
                spec.get("weights"),
                f"the teacher's head does not fit the {num_classes} classes of this data (or their names)",
                "give a teacher trained on this label space, or leave weights null to train one",
            )
        bridge = TeacherInput(mean, std, teacher_mean, teacher_std, size)
        return Teacher(bridge, model), count_parameters(model)[1]

    def prepare_training_data(
        self, context: Context, module: DistillationModule, datamodule: Any
    ) -> None:
        """Adds the transfer set's unlabelled images and the cached teacher outputs to the
        training split, as extra rows and extra tensors of its ``TensorBatches``."""
        if self.transfer_data is not None:
            check_no_leakage(
                context, self.transfer_data, f"{KEY}.transfer_data", "the unlabelled transfer set"
            )
            transfer = context.datamodule(self.transfer_data)
            transfer.setup("fit")
            datamodule.splits["train"] = with_transfer_set(
                datamodule.splits["train"], transfer.splits["train"]
            )
        if self.cache_teacher:
            datamodule.splits["train"] = cache_teacher_outputs(
                module, datamodule.splits["train"], datamodule.eval_batch_size
            )

    def teacher_context(self, context: Context, mean: Any, std: Any, size: int) -> Context:
        """The run seen from the teacher: its spec as the backbone, and a source task that is
        the run's data at the teacher's size and normalisation, with ``teacher_source.data``."""
        own = {"image_size": size, "mean": mean, "std": std}
        data = {k: v for k, v in own.items() if k in context.data} | self.teacher_source["data"]
        source = {**self.teacher_source, "data": data}
        return dataclasses.replace(context, backbone=self.teacher, source=source)

    @staticmethod
    def measure(
        student: nn.Module, teacher: Teacher, batches: list, classes: int
    ) -> dict[str, float]:
        """The student's agreement with the teacher and its inference time, on the test set."""
        return {
            "test/agreement": agreement(student, teacher, batches, classes),
            "test/ms_per_image": ms_per_image(student, batches),
        }
