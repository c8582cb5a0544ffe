"""Fine-tuning: a pretrained model updated on new data by a method (``paradigm/method``).

The base model comes from ``paradigms.models.source`` (the user's weights, the hub, or a cached
source stage). Its head is kept when the label space is the same (the head's shape, and the
class names recorded with an exported model; by shape alone where the names are unknown) and
replaced only when it differs. Which parameters learn, and when, is the method's (``paradigms.finetune.methods``);
their learning rates come per block group (``paradigms.finetune.lr_groups``).
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from paradigms.contract import Context, Needs, Result, Row, check_compare
from paradigms.finetune.lr_groups import log_lr_table, lr_table, param_groups
from paradigms.finetune.methods import Full, Method, PreparedModel
from paradigms.finetune.module import FinetuneModule
from paradigms.models.backbone import (
    architecture,
    count_parameters,
    create_pretrained,
    data_class_names,
    recorded_class_names,
)
from paradigms.models.classifier import SELECTED, ClassificationModule, reported_metrics
from paradigms.models.recipe import SupervisedRecipe
from paradigms.models.source import base_weights

COMPARISONS = ("scratch",)


class Finetune:
    """Fine-tunes a pretrained model on the target data with the configured method.

    Config keys: method (group ``paradigm/method``: full, partial, lp_ft, gradual, lora; each
    with its own settings and optionally its own peak lr), lr_groups (head_lr_mult,
    layer_decay), bn_mode (frozen | eval | train), mixup (timm Mixup arguments; off while both
    alphas are 0), ema_decay (0: off), optimizer, scheduler, label_smoothing, top_k (as
    scratch), baseline (a ``SupervisedRecipe``: the ``compare=scratch`` model and the source
    stage). Prints the learning rate of every block group at the start. Reports ``test/*`` of
    the fine-tuned model, ``source/test/*`` (the base model before fine-tuning, when its head
    fits), ``<stage>/test/*`` of a method's own stages (lp_ft: ``probe/``) and
    ``scratch/test/*``. Raises ConfigError for method settings the backbone cannot honour
    (more groups than it has, patterns or LoRA targets that match nothing),
    ``backbone.weights=none``, a missing weights file, or an unknown comparison.
    """

    default_compare: tuple[str, ...] = COMPARISONS
    needs = Needs()

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        baseline: SupervisedRecipe,
        method: Method | None = None,
        lr_groups: dict[str, float] | None = None,
        bn_mode: str = "frozen",
        mixup: dict[str, Any] | None = None,
        ema_decay: float = 0.0,
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.baseline = baseline
        self.method = method or Full()
        self.lr_groups = lr_groups or {}
        self.bn_mode = bn_mode
        self.mixup = mixup or {}
        self.ema_decay = ema_decay
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    def reports(self, compare: list[str]) -> list[str]:
        check_compare("finetune", compare, COMPARISONS)
        stages = ["", "source/", *(f"{s}/" for s in self.method.stages)]
        return reported_metrics(self.top_k, [*stages, *(f"{c}/" for c in compare)], SELECTED)

    def check(self, name: str) -> None:
        """Stops on method settings the backbone cannot honour, before anything trains."""
        self.method.check(architecture(name, pretrained=False), name)

    def module(
        self, prepared: PreparedModel, num_classes: int, lr: float, title: str
    ) -> FinetuneModule:
        """The LightningModule of a prepared model, with per-group learning rates (printed as a
        table)."""
        groups = param_groups(
            prepared.timm_model, lr, self.optimizer.get("weight_decay", 0.0), **self.lr_groups
        )
        if rank_zero_only.rank == 0:
            rows = lr_table(prepared.timm_model, groups, prepared.unfreeze_every)
            log_lr_table(title, rows)
        return FinetuneModule(
            prepared.model,
            num_classes,
            {**self.optimizer, "lr": lr},
            self.scheduler,
            self.label_smoothing,
            self.top_k,
            param_groups=groups,
            mixup=self.mixup,
            still_norms=prepared.still_norms,
            ema_decay=self.ema_decay,
            callbacks=prepared.callbacks,
        )

    def run(self, context: Context) -> Result:
        self.check(context.backbone["name"])
        weights = base_weights(context, "finetune", self.baseline)
        datamodule = context.datamodule()
        datamodule.setup("fit")
        classes, names = datamodule.num_classes, data_class_names(datamodule)
        spec = {**context.backbone, "weights": weights}
        model, head_kept = create_pretrained(spec, classes, names)
        total = count_parameters(model)[1]
        note = head_note(weights, classes, names, head_kept)
        rows, metrics, notes = [], {}, [note] if note else []
        meta = {"backbone": spec, "num_classes": classes, "class_names": names}
        if head_kept:
            plain = ClassificationModule(
                model, classes, self.optimizer, self.scheduler, self.label_smoothing, self.top_k
            )
            source = context.stages.test_only(
                plain, datamodule, context.run_dir / "compare" / "source"
            )
            rows.append(Row("source (before fine-tuning)", source, 0, total))
            metrics.update({f"source/{k}": v for k, v in source.items()})

        def train_stage(
            prepared: PreparedModel, lr: float, stage: str, title: str, **overrides: Any
        ) -> nn.Module:
            """A method's own stage in ``<run dir>/<stage>``; returns the model it exported."""
            stage_dir = context.run_dir / stage
            module = self.module(prepared, classes, lr, f"{self.method.name} {stage}: {title}")
            tested = context.stages.fit_and_test(
                module, datamodule, stage_dir, meta=meta, **overrides
            )
            rows.append(Row(title, tested, count_parameters(prepared.model)[0], total))
            metrics.update({f"{stage}/{k}": v for k, v in tested.items()})
            return create_pretrained({**spec, "weights": str(stage_dir)}, classes, names)[0]

        model = self.method.warm_up(model, self.bn_mode, train_stage)
        prepared = self.method.prepare(model, self.bn_mode)
        trainable = count_parameters(prepared.model)[0]
        lr = self.method.lr or self.optimizer["lr"]
        module = self.module(prepared, classes, lr, f"finetune: {self.method.name}")
        tuned = context.stages.fit_and_test(
            module, datamodule, context.run_dir, meta=meta, export=prepared.export
        )
        rows.append(Row(f"finetune ({self.method.name})", tuned, trainable, total))
        metrics.update(tuned)
        if "scratch" in context.compare:
            row, _ = self.baseline.baseline(context, "scratch")
            rows.append(row)
            metrics.update({f"scratch/{k}": v for k, v in row.metrics.items()})
        return Result(metrics, rows, notes)


def head_note(weights: str, classes: int, names: list[str] | None, head_kept: bool) -> str | None:
    """Why the base model's head was replaced, or kept on its shape alone (None: kept, its
    class names the data's)."""
    recorded = recorded_class_names(weights)
    if head_kept:
        if recorded is not None and names is not None:
            return None
        return (
            f"the base model's class names are unknown ({weights}): its head was kept because "
            f"it has the data's {classes} outputs"
        )
    if recorded is not None and names is not None and recorded != names:
        return (
            f"the base model's classes {recorded} are not the data's {names}: "
            "a new head was initialised"
        )
    return f"the base model's head does not fit the data's {classes} classes: a new head was initialised"
