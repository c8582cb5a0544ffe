"""Transfer learning: a base model trained on a related task with abundant data, its last
layers replaced by a new head for the new label space, everything else frozen.

Yosinski et al., "How transferable are features in deep neural networks?" (NeurIPS 2014).
The base model comes from ``paradigms.models.source`` (the user's weights, the hub, or a cached
source stage). When nothing below the head trains and the data is not randomly augmented,
the backbone's features are computed once (``paradigms.transfer.features``) and only the head trains
on them: the same result, many times faster per epoch.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from paradigms.contract import Context, Needs, Result, Row, check_compare
from paradigms.models.backbone import (
    architecture,
    classifier_keys,
    create_pretrained,
)
from paradigms.models.classifier import SELECTED, ClassificationModule, reported_metrics
from paradigms.models.freezing import freeze_except
from paradigms.models.groups import block_group_count, top_groups
from paradigms.models.heads import replace_head
from paradigms.models.recipe import SupervisedRecipe
from paradigms.models.source import base_weights
from paradigms.runner.errors import ConfigError
from paradigms.transfer.features import FeatureData, cache_blockers

COMPARISONS = ("scratch",)
GAIN = "gain/"


class Transfer:
    """Trains a new head (and optionally the top blocks, re-initialised) on a frozen base model.

    Config keys: head (hidden sizes, dropout, activation), replace_last_blocks (how many of
    timm's top block groups to re-initialise and train), cache_features (auto | true |
    false), optimizer, scheduler, label_smoothing, top_k (as scratch), baseline (a
    ``SupervisedRecipe``: the ``compare=scratch`` model and the source stage). Reports
    ``test/*``, ``scratch/test/*`` and ``gain/test/acc`` (transfer minus scratch). Raises
    ConfigError for ``backbone.weights=none``, a missing weights file, more replaced blocks
    than the backbone has, ``cache_features=true`` where features cannot be cached, an MLP
    head on a model without a single linear classifier, or an unknown comparison.
    """

    default_compare: tuple[str, ...] = COMPARISONS
    needs = Needs()

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        baseline: SupervisedRecipe,
        head: dict[str, Any] | None = None,
        replace_last_blocks: int = 0,
        cache_features: bool | str = "auto",
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.baseline = baseline
        self.head = head or {}
        self.replace_last_blocks = replace_last_blocks
        self.cache_features = cache_features
        self.label_smoothing = label_smoothing
        self.top_k = top_k

    def reports(self, compare: list[str]) -> list[str]:
        check_compare("transfer", compare, COMPARISONS)
        gains = [f"{GAIN}val/acc", f"{GAIN}test/acc"] if compare else []
        return reported_metrics(self.top_k, ["", *(f"{c}/" for c in compare)], SELECTED) + gains

    def build(
        self, spec: dict[str, Any], weights: str, num_classes: int
    ) -> tuple[nn.Module, tuple[int, int]]:
        """The base model with its top blocks re-initialised, a new head, the rest frozen;
        and its (trainable, total) parameter counts."""
        model, _ = create_pretrained({**spec, "weights": weights}, num_classes)
        replaced = top_groups(model, self.replace_last_blocks)
        if replaced:
            fresh = create_pretrained({**spec, "weights": "none"}, num_classes)[0].state_dict()
            model.load_state_dict({k: fresh[k] for k in replaced}, strict=False)
        replace_head(model, num_classes, **self.head)
        counts = freeze_except(model, set(replaced) | classifier_keys(model))
        return model, counts

    def check(self, context: Context, datamodule: Any) -> bool:
        """Stops on what cannot work before anything trains; returns whether to cache."""
        probe = architecture(context.backbone["name"], pretrained=False)
        groups = block_group_count(probe)
        if self.replace_last_blocks > groups:
            raise ConfigError(
                "paradigm.replace_last_blocks",
                self.replace_last_blocks,
                f"{context.backbone['name']} has {groups} block groups above its stem",
                f"use a value from 0 to {groups}",
            )
        blockers = cache_blockers(datamodule, context.backbone, self.replace_last_blocks)
        if self.cache_features is True and blockers:
            raise ConfigError(
                "paradigm.cache_features",
                True,
                f"features cannot be cached: {'; '.join(blockers)}",
                "set paradigm.cache_features=false (or auto)",
            )
        self.blockers = blockers
        return self.cache_features is not False and not blockers

    def run(self, context: Context) -> Result:
        datamodule = context.datamodule()
        datamodule.setup("fit")
        cache = self.check(context, datamodule)
        weights = base_weights(context, "transfer", self.baseline)
        model, (trainable, total) = self.build(context.backbone, weights, datamodule.num_classes)
        data = (
            FeatureData(datamodule, model, context.stages.trainer["accelerator"])
            if cache
            else datamodule
        )
        module = ClassificationModule(
            model.get_classifier() if cache else model,
            datamodule.num_classes,
            self.optimizer,
            self.scheduler,
            self.label_smoothing,
            self.top_k,
        )
        meta = {"backbone": {**context.backbone, "weights": weights}, "head": self.head}
        metrics = context.stages.fit_and_test(
            module, data, context.run_dir, meta=meta, export=model
        )
        rows = [Row("transfer", metrics, trainable, total)]
        notes = [
            "features cached: yes (the frozen backbone ran once over the data)"
            if cache
            else f"features cached: no ({'; '.join(self.blockers) or 'cache_features=false'})"
        ]
        if "scratch" in context.compare:
            row, _ = self.baseline.baseline(context, "scratch")
            gain = {k: metrics[k] - row.metrics[k] for k in metrics if "/acc" in k}
            rows += [row, Row("transfer - scratch", gain)]
            metrics = {
                **metrics,
                **{f"scratch/{k}": v for k, v in row.metrics.items()},
                **{f"{GAIN}{k}": v for k, v in gain.items()},
            }
        return Result(metrics, rows, notes)
