"""Supervised training from random weights: the baseline every other paradigm is compared to."""

from __future__ import annotations

from paradigms.contract import Context, Needs, Result
from paradigms.models.classifier import SELECTED, reported_metrics
from paradigms.models.recipe import SupervisedRecipe
from paradigms.runner.errors import ConfigError


class Scratch(SupervisedRecipe):
    """Trains backbone + head from random initialisation on the configured data.

    Config keys: those of ``SupervisedRecipe`` (optimizer, scheduler, label_smoothing,
    top_k). Raises ConfigError when ``backbone.weights`` names pretrained weights (that is
    fine-tuning) or ``compare`` asks for a baseline (scratch is the baseline).
    """

    default_compare: tuple[str, ...] = ()
    needs = Needs()

    def reports(self, compare: list[str]) -> list[str]:
        return reported_metrics(self.top_k, [""], SELECTED)

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
