"""Frozen BatchNorm stays still, 1d (LeViT's tokens) as well as 2d."""

from __future__ import annotations

import timm
import torch

from paradigms.models.backbone import classifier_keys
from paradigms.models.freezing import freeze_except


def test_frozen_batchnorm1d_keeps_its_statistics_in_training_mode():
    torch.manual_seed(0)
    model = timm.create_model("levit_128s", pretrained=False, num_classes=3, img_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    assert any(type(m) is torch.nn.BatchNorm1d for m in model.modules()), (
        "LeViT should normalise with BatchNorm1d"
    )
    trainable, total = freeze_except(model, classifier_keys(model))
    assert 0 < trainable < total
    model.train()
    model(torch.randn(4, 3, 64, 64) * 3 + 1)
    after = model.state_dict()
    drifted = [k for k, v in before.items() if not torch.equal(after[k], v)]
    assert not drifted, f"{len(drifted)} running statistics moved, e.g. {drifted[0]}"
    assert set(before) <= set(after)  # same keys: the export loads into a stock LeViT
