"""Per-layer learning rates as explicit optimizer groups: a head multiplier and layer-wise decay.

Layer-wise decay follows timm's ``param_groups_layer_decay`` (BEiT's recipe): its layers are
timm's fine ``group_matcher`` groups (one per block: a ResNet's ``layer3.1``, a ViT's
``blocks.7``), a layer ``d`` below the top gets ``layer_decay ** d``, and 1-d parameters and the
model's ``no_weight_decay()`` (``pos_embed``, ``cls_token``) get no weight decay. The scales and
decays are timm's own, read from its groups; the head's lr is ``lr * head_lr_mult`` instead.
Each group carries its own initial ``lr``; the schedule (``paradigms.models.optim``) multiplies
every group's own lr, so the ratios hold under any schedule, unlike timm's ``lr_scale``, which
only timm's schedulers read. Each group also carries the coarse ``depth`` of
``paradigms.models.groups`` (0: head, 1: top block group), which gradual unfreezing opens by.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

from rich.console import Console
from rich.table import Table
from timm.models import group_parameters
from timm.optim import param_groups_layer_decay
from torch import nn

from paradigms.models.backbone import classifier_keys
from paradigms.models.groups import layer_groups


def depths(model: nn.Module) -> dict[str, int]:
    """Each parameter's distance from the output in coarse block groups: 0 for the head, 1 for
    the top block group, ..., the largest for the stem."""
    head = classifier_keys(model)
    groups = layer_groups(model)
    depth = {k: len(groups) - i for i, keys in enumerate(groups) for k in keys}
    return {n: 0 if n in head else depth[n] for n, _ in model.named_parameters()}


def timm_layers(model: nn.Module) -> dict[str, int]:
    """Each parameter's layer in timm's layer-wise decay (0: the stem, the largest: the top)."""
    return group_parameters(model, model.group_matcher(coarse=False), reverse=True)


def timm_decay(
    model: nn.Module, weight_decay: float, layer_decay: float
) -> dict[str, tuple[float, float]]:
    """Each trainable parameter's (lr scale, weight decay) as timm's
    ``param_groups_layer_decay`` sets them."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_layer_decay(
        model, weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay
    )
    by_id = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


def layer_names(model: nn.Module) -> dict[tuple[bool, int], str]:
    """A distinct name per (is head, timm layer): ``head``, ``stem`` for the lowest layer, else
    its parameters' common module prefix (``layer3.1``, ``blocks.7``) or, when they share none,
    their top modules joined (``blocks.11+norm``)."""
    head, layers = classifier_keys(model), timm_layers(model)
    modules: dict[tuple[bool, int], list[str]] = {}
    for name, _ in model.named_parameters():
        modules.setdefault((name in head, layers[name]), []).append(name.rpartition(".")[0])
    names: dict[tuple[bool, int], str] = {}
    for (is_head, layer), found in modules.items():
        common = os.path.commonprefix([m + "." for m in found]).rpartition(".")[0]
        tops = "+".join(dict.fromkeys(".".join(m.split(".")[:2]) for m in found))
        name = "head" if is_head else "stem" if layer == 0 else common or tops
        names[(is_head, layer)] = name if name not in names.values() else f"{name}#{layer}"
    return names


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 1.0,
    layer_decay: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters, one per (timm layer, decay or not), each
    with ``name``, ``layer``, ``depth`` (coarse), ``lr`` and ``weight_decay``: the head's lr is
    ``lr * head_lr_mult``, every other parameter's ``lr`` times timm's scale."""
    head, layers, coarse = classifier_keys(model), timm_layers(model), depths(model)
    names, decay = layer_names(model), timm_decay(model, weight_decay, layer_decay)
    groups: dict[tuple[bool, int, int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale, this_decay = decay[name]
        key = (name in head, layers[name], coarse[name], this_decay > 0)
        if key not in groups:
            groups[key] = {
                "name": names[key[:2]] + ("" if key[3] else "/no_wd"),
                "layer": key[1],
                "depth": key[2],
                "lr": lr * (head_lr_mult if key[0] else scale),
                "weight_decay": this_decay,
                "params": [],
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (not k[0], -k[1], k[2], k[3]))]


def lr_table(
    model: nn.Module, groups: list[dict[str, Any]], every: int | None = None
) -> list[tuple[str, int, str, float]]:
    """(layer, #params, trainable, initial lr) per timm layer, the head first; frozen layers
    are listed with lr 0; with gradual unfreezing every k epochs, the epoch a layer starts
    learning."""
    head, layers, coarse = classifier_keys(model), timm_layers(model), depths(model)
    names = layer_names(model)
    lrs = {g["name"].split("/")[0]: g["lr"] for g in groups}
    trainable = {id(p) for g in groups for p in g["params"]}
    rows = {names[key]: [0, 0, 0] for key in sorted(names, key=lambda k: (not k[0], -k[1]))}
    for name, param in model.named_parameters():
        row = rows[names[(name in head, layers[name])]]  # count, learning, coarse depth
        row[0] += param.numel()
        row[1] += param.numel() if id(param) in trainable else 0
        row[2] = max(row[2], coarse[name])
    table = []
    for name, (count, learns, depth) in rows.items():
        state = "yes" if learns == count else "no" if learns == 0 else f"{learns:,}"
        if every and depth and learns:
            state = f"from epoch {depth * every}"
        table.append((name, count, state, lrs.get(name, 0.0)))
    return table


def log_lr_table(title: str, rows: list[tuple[str, int, str, float]]) -> None:
    """Writes the table to the run's cli.log (the console shows it with ``verbose=true``)."""
    table = Table(title=title)
    for column in ("layer", "#params", "trainable", "lr"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for name, count, state, lr in rows:
        table.add_row(name, f"{count:,}", state, f"{lr:.3g}")
    text = io.StringIO()
    Console(file=text, width=100).print(table)
    logging.getLogger(__name__).info("learning rates per layer\n%s", text.getvalue())
