"""timm models and weight sources: files keep or replace the head (by shape, and by the class
names an export records), unsafe pickles are refused."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from datamodules.digits import DigitsDataModule
from paradigms.models.backbone import check_model_name, create_pretrained, export_model
from paradigms.runner.errors import ConfigError

SPEC = {"name": "test_resnet", "in_chans": 3}


def _saved(
    tmp_path: Path, num_classes: int, suffix: str = ".safetensors"
) -> tuple[Path, torch.nn.Module]:
    model = timm.create_model("test_resnet", num_classes=num_classes)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path, model


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        check_model_name("resnet_18")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_same_label_space_keeps_the_head(tmp_path: Path, suffix: str) -> None:
    path, saved = _saved(tmp_path, 10, suffix)
    model, head_kept = create_pretrained({**SPEC, "weights": str(path)}, 10)
    assert head_kept
    for key, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_other_label_space_replaces_only_the_head(tmp_path: Path) -> None:
    path, saved = _saved(tmp_path, 10)
    model, head_kept = create_pretrained({**SPEC, "weights": str(path)}, 5)
    assert not head_kept
    assert model.get_classifier().out_features == 5
    assert torch.equal(model.state_dict()["conv1.0.weight"], saved.state_dict()["conv1.0.weight"])


def _exported(tmp_path: Path, class_names: list[str]) -> tuple[Path, torch.nn.Module]:
    """A run directory holding a test_resnet exported as this tool does, with its classes."""
    model = timm.create_model("test_resnet", num_classes=len(class_names))
    meta = {"num_classes": len(class_names), "class_names": class_names}
    export_model(model, tmp_path / "run", meta)
    return tmp_path / "run", model


def test_an_export_for_other_classes_of_the_same_count_gets_a_new_head(tmp_path: Path) -> None:
    source = DigitsDataModule(classes=[0, 1, 2, 3, 4])
    target = DigitsDataModule(classes=[5, 6, 7, 8, 9])
    run_dir, saved = _exported(tmp_path, source.class_names)
    spec = {**SPEC, "weights": str(run_dir)}
    model, head_kept = create_pretrained(spec, 5, target.class_names)
    assert not head_kept
    assert not torch.equal(model.get_classifier().weight, saved.get_classifier().weight)
    assert torch.equal(model.state_dict()["conv1.0.weight"], saved.state_dict()["conv1.0.weight"])
    model, head_kept = create_pretrained(spec, 5, ["0", "1", "2", "3", "4"])
    assert head_kept
    assert torch.equal(model.get_classifier().weight, saved.get_classifier().weight)


def test_unknown_class_names_keep_a_head_that_fits_by_shape(tmp_path: Path) -> None:
    path, saved = _saved(tmp_path, 5)  # a plain weights file records no classes
    model, head_kept = create_pretrained(
        {**SPEC, "weights": str(path)}, 5, ["5", "6", "7", "8", "9"]
    )
    assert head_kept
    assert torch.equal(model.get_classifier().weight, saved.get_classifier().weight)
    run_dir, _ = _exported(tmp_path, ["0", "1", "2", "3", "4"])
    assert create_pretrained({**SPEC, "weights": str(run_dir)}, 5)[1]  # the data's unknown


def test_first_conv_is_adapted_to_other_input_channels(tmp_path: Path) -> None:
    path, saved = _saved(tmp_path, 10)
    model, _ = create_pretrained({**SPEC, "in_chans": 1, "weights": str(path)}, 10)
    weight = saved.state_dict()["conv1.0.weight"]
    assert torch.allclose(model.state_dict()["conv1.0.weight"], weight.sum(dim=1, keepdim=True))


def test_a_file_needing_arbitrary_unpickling_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save(
        {"state_dict": timm.create_model("test_resnet").state_dict(), "extra": Path("x")}, path
    )
    with pytest.raises(ConfigError, match="unpickling"):
        create_pretrained({**SPEC, "weights": str(path)}, 10)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path, 10)
    with pytest.raises(ConfigError, match="does not fit"):
        create_pretrained({"name": "resnet10t", "weights": str(path)}, 10)


def test_a_hub_name_passes_the_name_check_and_offline_stops_in_one_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_model_name("hf-hub:timm/resnet18.a1_in1k")  # timm fetches it at run time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1
    with pytest.raises(ConfigError, match=r"backbone.name='hf-hub:timm/resnet18.a1_in1k'.*Fix"):
        create_pretrained({**SPEC, "name": "hf-hub:timm/resnet18.a1_in1k"}, 10)
