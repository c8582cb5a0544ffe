"""Per-layer learning rates as explicit optimizer groups: a head multiplier and layer-wise decay.

The groups follow the coarse block groups of ``paradigms.models.groups`` (stem, one per stage, then
the head). Each carries its own initial ``lr``; the schedule (``paradigms.models.optim``) multiplies
every group's own lr, so the ratios hold under any schedule, unlike timm's ``lr_scale``, which
only timm's schedulers read. Biases and norms get no weight decay, as timm does.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

from paradigms.models.backbone import classifier_keys
from paradigms.models.groups import layer_groups


def depths(model: nn.Module) -> dict[str, int]:
    """Each parameter's distance from the output: 0 for the head, 1 for the top block group,
    ..., the largest for the stem."""
    head = classifier_keys(model)
    groups = layer_groups(model)
    depth = {k: len(groups) - i for i, keys in enumerate(groups) for k in keys}
    return {n: 0 if n in head else depth[n] for n, _ in model.named_parameters()}


def group_name(depth: int, deepest: int) -> str:
    return "head" if depth == 0 else "stem" if depth == deepest else f"block-{depth}"


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 1.0,
    layer_decay: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters, one per (depth, decay or not), each with
    ``name``, ``depth``, ``lr`` and ``weight_decay``: the head's lr is ``lr * head_lr_mult``,
    a block group's ``lr * layer_decay ** depth``."""
    by_depth = depths(model)
    deepest = max(by_depth.values())
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth, decays = by_depth[name], param.ndim > 1
        key = (depth, decays)
        if key not in groups:
            scale = head_lr_mult if depth == 0 else layer_decay**depth
            groups[key] = {
                "name": group_name(depth, deepest) + ("" if decays else "/no_wd"),
                "depth": depth,
                "lr": lr * scale,
                "weight_decay": weight_decay if decays else 0.0,
                "params": [],
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def lr_table(
    model: nn.Module, groups: list[dict[str, Any]], every: int | None = None
) -> list[tuple[str, int, str, float]]:
    """(group, #params, trainable, initial lr) per block group, the head first; frozen
    groups are listed with lr 0; with gradual unfreezing every k epochs, the epoch a group
    starts learning."""
    by_depth = depths(model)
    deepest = max(by_depth.values())
    lrs = {g["depth"]: g["lr"] for g in groups}
    trainable = {id(p) for g in groups for p in g["params"]}
    rows = []
    for depth in range(deepest + 1):
        params = [p for n, p in model.named_parameters() if by_depth[n] == depth]
        count = sum(p.numel() for p in params)
        learns = sum(p.numel() for p in params if id(p) in trainable)
        state = "yes" if learns == count else "no" if learns == 0 else f"{learns:,}"
        if every and depth and learns:
            state = f"from epoch {depth * every}"
        rows.append((group_name(depth, deepest), count, state, lrs.get(depth, 0.0)))
    return rows


def print_lr_table(title: str, rows: list[tuple[str, int, str, float]]) -> None:
    table = Table(title=title)
    for column in ("group", "#params", "trainable", "lr"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for name, count, state, lr in rows:
        table.add_row(name, f"{count:,}", state, f"{lr:.3g}")
    Console().print(table)
