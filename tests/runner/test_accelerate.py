"""``callbacks.accelerate``: channels-last where it pays (CUDA; on a CPU, models with grouped or
depthwise convolutions), applied by the Lightning callback to a stage's model."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import timm
import torch

from paradigms.runner.accelerate import Accelerate, wants_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("name", "on_cpu"),
    [
        ("mobilenetv3_small_050", True),
        ("test_convnext", True),
        ("test_resnet", False),
        ("test_vit", False),
    ],  # fmt: skip
)
def test_auto_lays_out_channels_last_on_a_cpu_only_models_with_grouped_convolutions(
    name: str, on_cpu: bool
) -> None:
    model = timm.create_model(name, num_classes=10, in_chans=1)
    assert wants_channels_last(model, CPU, "auto") is on_cpu
    assert wants_channels_last(model, CUDA, "auto") is True
    assert wants_channels_last(model, CPU, True) is True
    assert wants_channels_last(model, CUDA, False) is False


def test_the_callback_makes_a_stage_model_channels_last_and_its_outputs_unchanged() -> None:
    torch.manual_seed(0)
    module = pl.LightningModule()
    module.model = timm.create_model("lcnet_050", num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    before = module.model(x)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    Accelerate().setup(trainer, module, "fit")
    weights = [p for p in module.model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    stem = module.model.conv_stem.weight  # 3 channels, 3x3: the two layouts differ
    assert not stem.is_contiguous(), "laid out anew, not left in standard order"
    torch.testing.assert_close(module.model(x), before, atol=1e-5, rtol=1e-5)
