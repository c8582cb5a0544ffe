"""Fine-tuning: a pretrained model updated on new data, by one of several strategies.

The base model comes from ``paradigms.models.source`` (the user's weights, the hub, or a cached
source stage). Its head is kept when the label space is the same and replaced only when it
differs. Which parameters learn, and when, is the strategy's (``paradigms.finetune.methods``);
their learning rates come per block group (``paradigms.finetune.lr_groups``).
"""

from __future__ import annotations

import re
from typing import Any

import timm
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from paradigms.contract import Context, Result, Row, check_compare
from paradigms.finetune.lr_groups import lr_table, param_groups, print_lr_table
from paradigms.finetune.methods import (
    BN_MODES,
    STRATEGIES,
    FinetuneModule,
    Plan,
    gradual,
    head_only,
    lora,
    matching,
    partial,
)
from paradigms.models.backbone import check_model_name, count_parameters, create_pretrained
from paradigms.models.classifier import ClassificationModule, reported_metrics
from paradigms.models.groups import block_group_count
from paradigms.models.recipe import SupervisedRecipe
from paradigms.models.source import base_weights
from paradigms.runner.errors import ConfigError

COMPARISONS = ("scratch",)
PROBE = "probe/"


class Finetune:
    """Fine-tunes a pretrained model on the target data with the configured strategy.

    Config keys: strategy (full | partial | lp_ft | gradual | lora) and its section (partial:
    last_groups, patterns; lp_ft: epochs, lr; gradual: every; lora: r, alpha, dropout,
    target_modules; partial and lora also take lr, their peak lr), lr_groups (head_lr_mult, layer_decay), bn_mode (frozen | eval | train),
    mixup (timm Mixup arguments; off while both alphas are 0), ema_decay (0: off),
    optimizer, scheduler, label_smoothing, top_k (as scratch), baseline (a ``SupervisedRecipe``
    recipe: the ``compare=scratch`` model and the source stage). Prints the learning rate
    of every block group at the start. Reports ``test/*`` of the fine-tuned model,
    ``source/test/*`` (the base model before fine-tuning, when its head fits),
    ``probe/test/*`` (lp_ft's linear probe) and ``scratch/test/*``. Raises ConfigError for
    an unknown strategy or bn_mode, partial settings that train nothing below the head or
    more groups than the backbone has, LoRA targets that match no module,
    ``backbone.weights=none``, a missing weights file, or an unknown comparison.
    """

    default_compare: tuple[str, ...] = ("scratch",)

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        baseline: SupervisedRecipe,
        strategy: str = "full",
        partial: dict[str, Any] | None = None,
        lp_ft: dict[str, Any] | None = None,
        gradual: dict[str, Any] | None = None,
        lora: dict[str, Any] | None = None,
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
        self.strategy = strategy
        self.partial = partial or {"last_groups": 1, "patterns": []}
        self.lp_ft = lp_ft or {"epochs": 5, "lr": 1e-2}
        self.gradual = gradual or {"every": 1}
        self.lora = lora or {}
        self.lr_groups = lr_groups or {}
        self.bn_mode = bn_mode
        self.mixup = mixup or {}
        self.ema_decay = ema_decay
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    def check_settings(self) -> None:
        """Stops on unknown choices (called by ``reports``, before anything trains; errors
        raised while Hydra instantiates would not print as one line)."""
        for key, value, allowed in (
            ("strategy", self.strategy, STRATEGIES),
            ("bn_mode", self.bn_mode, BN_MODES),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"paradigm.{key}", value, "no such choice", f"use one of {', '.join(allowed)}"
                )
        if self.strategy == "gradual" and self.gradual["every"] < 1:
            raise ConfigError(
                "paradigm.gradual.every",
                self.gradual["every"],
                "groups unfreeze every k >= 1 epochs",
                "use paradigm.gradual.every=1 or more",
            )

    def reports(self, compare: list[str]) -> list[str]:
        self.check_settings()
        check_compare("finetune", compare, COMPARISONS)
        probe = [PROBE] if self.strategy == "lp_ft" else []
        return reported_metrics(self.top_k, ["", "source/", *probe, *(f"{c}/" for c in compare)])

    def check(self, name: str) -> None:
        """Stops on strategy settings the backbone cannot honour, before anything trains."""
        self.check_settings()
        check_model_name(name)
        probe = timm.create_model(name, pretrained=False)
        if self.strategy == "partial":
            groups, patterns = self.partial["last_groups"], self.partial.get("patterns") or []
            names = [n for n, _ in probe.named_parameters()]
            if not 0 <= groups <= block_group_count(probe):
                raise ConfigError(
                    "paradigm.partial.last_groups",
                    groups,
                    f"{name} has {block_group_count(probe)} block groups above its stem",
                    f"use a value from 0 to {block_group_count(probe)}",
                )
            missed = [p for p in patterns if not matching(names, [p])]
            if missed or not (groups or patterns):
                raise ConfigError(
                    "paradigm.partial.patterns",
                    missed[0] if missed else patterns,
                    "matches no parameter" if missed else "nothing below the head would train",
                    f"use regexes of {name}'s parameter names (e.g. {names[-3]!r}), or last_groups>0",
                )
        if self.strategy == "lora":
            target = self.lora["target_modules"]
            layers = (nn.Conv2d, nn.Linear)
            names = [n for n, m in probe.named_modules() if isinstance(m, layers)]
            if not [n for n in names if re.fullmatch(target, n)]:  # as peft matches
                raise ConfigError(
                    "paradigm.lora.target_modules",
                    target,
                    f"matches no conv or linear layer of {name} (a full-name regex)",
                    f"match names such as {', '.join(names[1:4])}",
                )

    def plan(self, model: nn.Module) -> Plan:
        """The strategy applied to ``model`` (lp_ft's second stage trains everything)."""
        if self.strategy == "partial":
            return partial(
                model, self.partial["last_groups"], self.partial.get("patterns") or [], self.bn_mode
            )
        if self.strategy == "gradual":
            return gradual(model, self.gradual["every"], self.bn_mode)
        if self.strategy == "lora":
            return lora(model, self.lora, self.bn_mode)
        return Plan(model, model)

    def module(self, plan: Plan, num_classes: int, lr: float, title: str) -> FinetuneModule:
        """The LightningModule of a plan, with per-group learning rates (printed as a table)."""
        groups = param_groups(
            plan.timm_model, lr, self.optimizer.get("weight_decay", 0.0), **self.lr_groups
        )
        if rank_zero_only.rank == 0:
            every = self.gradual["every"] if self.strategy == "gradual" else None
            print_lr_table(title, lr_table(plan.timm_model, groups, every))
        return FinetuneModule(
            plan.model,
            num_classes,
            {**self.optimizer, "lr": lr},
            self.scheduler,
            self.label_smoothing,
            self.top_k,
            param_groups=groups,
            mixup=self.mixup,
            still_norms=plan.still_norms,
            ema_decay=self.ema_decay,
            callbacks=plan.callbacks,
        )

    def run(self, context: Context) -> Result:
        self.check(context.backbone["name"])
        weights = base_weights(context, "finetune", self.baseline)
        datamodule = context.datamodule()
        datamodule.setup("fit")
        classes = datamodule.num_classes
        model, head_kept = create_pretrained({**context.backbone, "weights": weights}, classes)
        total = count_parameters(model)[1]
        rows, metrics, notes = [], {}, []
        if head_kept:
            plain = ClassificationModule(
                model, classes, self.optimizer, self.scheduler, self.label_smoothing, self.top_k
            )
            source = context.stages.test_only(
                plain, datamodule, context.run_dir / "compare" / "source"
            )
            rows.append(Row("source (before fine-tuning)", source, 0, total))
            metrics.update({f"source/{k}": v for k, v in source.items()})
        else:
            notes.append(
                f"the base model's head does not fit the data's {classes} classes: "
                "a new head was initialised"
            )
        if self.strategy == "lp_ft":
            probe_dir = context.run_dir / "probe"
            plan = head_only(model, self.bn_mode)
            module = self.module(plan, classes, self.lp_ft["lr"], "lp_ft stage 1: linear probe")
            probe = context.stages.fit_and_test(
                module, datamodule, probe_dir, max_epochs=self.lp_ft["epochs"]
            )
            rows.append(Row("linear probe (lp_ft 1)", probe, count_parameters(model)[0], total))
            metrics.update({f"{PROBE}{k}": v for k, v in probe.items()})
            spec = {**context.backbone, "weights": str(probe_dir)}
            model = create_pretrained(spec, classes)[0]
        plan = self.plan(model)
        trainable = count_parameters(plan.model)[0]
        lr = {"partial": self.partial, "lora": self.lora}.get(self.strategy, {}).get("lr")
        lr = lr or self.optimizer["lr"]
        module = self.module(plan, classes, lr, f"finetune: {self.strategy}")
        tuned = context.stages.fit_and_test(module, datamodule, context.run_dir, export=plan.export)
        rows.append(Row(f"finetune ({self.strategy})", tuned, trainable, total))
        metrics.update(tuned)
        if "scratch" in context.compare:
            row = self.baseline.train(context, context.run_dir / "compare" / "scratch", "scratch")
            rows.append(row)
            metrics.update({f"scratch/{k}": v for k, v in row.metrics.items()})
        return Result(metrics, rows, notes)
