"""The base model that transfer, fine-tuning and distillation start from.

In order of preference: the weights the user gives (``backbone.weights``: a file, a run
directory, or ``timm`` for the hub), else a *source stage* this tool runs itself: the same
backbone trained on the related task the data defines (``source.data``), cached under
``cache_dir/source/<hash of what defines it>`` so the next run reuses it
(``paradigms.runner.stage_cache``).
"""

from __future__ import annotations

from pathlib import Path

from paradigms.contract import Context
from paradigms.models.backbone import resolve_weights_file
from paradigms.models.leakage import check_no_leakage
from paradigms.models.recipe import SupervisedRecipe
from paradigms.runner.errors import ConfigError
from paradigms.runner.stage_cache import cached_stage


def base_weights(
    context: Context, purpose: str, recipe: SupervisedRecipe, key: str = "source.data"
) -> str:
    """The weights a pretrained model of this run starts from: a path, or ``timm``. A
    source stage trained here (its data the run's with the overrides at ``key``) is first
    checked not to train on the run's validation or test images; given weights cannot be."""
    weights = context.backbone.get("weights")
    if weights is not None:
        if weights == "none":
            raise ConfigError(
                "backbone.weights",
                weights,
                f"{purpose} starts from a pretrained model",
                "leave backbone.weights unset (a cached source stage), or give a file, run dir or 'timm'",
            )
        resolve_weights_file(weights)  # stops early on a missing file
        return weights
    if not context.source:
        raise ConfigError(
            "backbone.weights",
            None,
            f"{purpose} needs a base model and this data defines no source task",
            "set backbone.weights=<file|run dir|timm>, or source.data for a source stage",
        )
    check_no_leakage(context, context.source["data"], key, f"the source stage for {purpose}")
    return str(train_source(context, recipe))


def train_source(context: Context, recipe: SupervisedRecipe) -> Path:
    """Trains (or finds in the cache) the backbone on the source task; returns its directory."""
    source = context.source
    backbone = {k: v for k, v in context.backbone.items() if k != "weights"}
    data = {**context.data, **source["data"]}
    definition = {
        "backbone": backbone,
        "data": data,
        "source": source,
        "recipe": vars(recipe),
        "seed": context.seed,
    }
    return cached_stage(
        context.cache_dir,
        "source",
        definition,
        context.run_dir,
        lambda work: recipe.train(
            context, work, "source", data=source["data"], max_epochs=source["max_epochs"]
        ),
    )
