"""Layer-wise lr decay follows timm's ``param_groups_layer_decay``: the same lr scale for every
parameter (a ResNet per block, not per stage) and no weight decay where timm has none
(``pos_embed``, ``cls_token``, 1-d parameters); the head keeps its own multiplier."""

from __future__ import annotations

import pytest
import timm
from timm.optim import param_groups_layer_decay

from paradigms.finetune.lr_groups import param_groups

LR, WEIGHT_DECAY, LAYER_DECAY = 0.1, 0.05, 0.7


def _ours(model, head_lr_mult: float = 1.0) -> dict[str, tuple[float, float]]:
    """Each parameter's (lr / LR, weight decay) in our groups."""
    groups = param_groups(model, LR, WEIGHT_DECAY, head_lr_mult, LAYER_DECAY)
    by_id = {id(p): (g["lr"] / LR, g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


def _timms(model) -> dict[str, tuple[float, float]]:
    """Each parameter's (lr_scale, weight decay) as timm's optimizer factory groups them."""
    groups = param_groups_layer_decay(
        model,
        WEIGHT_DECAY,
        getattr(model, "no_weight_decay", set)(),  # as timm.optim.create_optimizer_v2
        layer_decay=LAYER_DECAY,
    )
    by_id = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["test_resnet", "resnet18", "test_vit"])
def test_every_parameter_gets_timms_lr_scale_and_weight_decay(name: str) -> None:
    model = timm.create_model(name, num_classes=5)
    ours, timms = _ours(model), _timms(model)
    assert len(set(v[0] for v in timms.values())) > 5  # the decay spreads over many layers
    wrong = [n for n in timms if ours[n] != pytest.approx(timms[n])]
    assert not wrong, f"{len(wrong)} of {len(timms)} differ, e.g. {wrong[:3]}"


def test_position_embedding_and_class_token_get_no_weight_decay() -> None:
    model = timm.create_model("test_vit", num_classes=5)
    ours = _ours(model)
    assert ours["pos_embed"][1] == ours["cls_token"][1] == 0.0
    assert ours["blocks.0.attn.qkv.weight"][1] == WEIGHT_DECAY


def test_the_head_multiplier_applies_to_the_head_only() -> None:
    model = timm.create_model("resnet18", num_classes=5)
    ours, timms = _ours(model, head_lr_mult=10.0), _timms(model)
    assert ours["fc.weight"][0] == pytest.approx(10.0)
    assert ours["layer4.1.conv1.weight"][0] == pytest.approx(timms["layer4.1.conv1.weight"][0])
