"""Transfer: frozen layers and BatchNorm statistics stay bit-identical, the new head learns,
cached features train exactly as the frozen backbone does, a user's weights file is a base."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from datamodules.digits import DigitsDataModule
from datamodules.image_folder import ImageFolderDataModule
from paradigms.models.classifier import ClassificationModule
from paradigms.runner.errors import ConfigError
from paradigms.transfer.features import FeatureData, pooled_features
from paradigms.transfer.paradigm import Transfer
from tests.datamodules.images_on_disk import image_folder
from tests.helpers import FAST, base_model_file, cli, quiet_trainer, run_dirs, summary

OPTIMIZER = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01}
SCHEDULER = {"name": "cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.01}
SPEC = {"name": "test_resnet", "in_chans": 3, "img_size": 32}


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model_file(tmp_path_factory.mktemp("base"))


def _fit(module: pl.LightningModule, data: pl.LightningDataModule) -> None:
    pl.seed_everything(0, verbose=False)
    quiet_trainer(max_epochs=2, deterministic=True).fit(module, datamodule=data)


def _digits() -> DigitsDataModule:
    data = DigitsDataModule(classes=[5, 6, 7, 8, 9], train_per_class=10, batch_size=16)
    data.setup("fit")
    return data


@pytest.mark.parametrize("replace_last_blocks", [0, 1])
def test_frozen_layers_stay_and_new_layers_learn(base_file: Path, replace_last_blocks: int):
    transfer = Transfer(
        OPTIMIZER, SCHEDULER, baseline=None, replace_last_blocks=replace_last_blocks
    )
    model, (trainable, total) = transfer.build(SPEC, str(base_file), 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _fit(ClassificationModule(model, 5, OPTIMIZER, SCHEDULER), _digits())
    after = model.state_dict()
    base = load_file(str(base_file))

    new = ("fc.", "layer4.") if replace_last_blocks else ("fc.",)
    frozen = [k for k in before if not k.startswith(new)]
    assert "layer1.0.bn1.running_mean" in frozen and "conv1.0.weight" in frozen
    for key in frozen:
        assert torch.equal(before[key], after[key]), f"frozen {key} moved"
        assert torch.equal(after[key], base[key]), f"{key} is not the base model's"
    assert not torch.equal(before["fc.weight"], after["fc.weight"]), "the head did not learn"
    assert 0 < trainable < total
    if replace_last_blocks:
        assert not torch.equal(after["layer4.0.conv1.weight"], base["layer4.0.conv1.weight"])
        assert not torch.equal(
            before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"]
        )


@pytest.mark.parametrize(
    "backbone,head", [("test_resnet", {}), ("test_vit", {"hidden": [16], "dropout": 0.2})]
)
def test_cached_features_train_exactly_as_the_frozen_backbone(backbone: str, head: dict):
    spec = {**SPEC, "name": backbone, "model_kwargs": {"img_size": 32} if "vit" in backbone else {}}
    heads = []
    for cached in (False, True):
        torch.manual_seed(0)  # the same base model and the same new head in both paths
        model, _ = Transfer(OPTIMIZER, SCHEDULER, baseline=None, head=head).build(spec, "none", 5)
        data = FeatureData(_digits(), model) if cached else _digits()
        trained = model.get_classifier() if cached else model
        _fit(ClassificationModule(trained, 5, OPTIMIZER, SCHEDULER), data)
        heads.append({k: v.clone() for k, v in model.get_classifier().state_dict().items()})
    assert heads[0], "the head has no weights"
    for key in heads[0]:
        torch.testing.assert_close(heads[0][key], heads[1][key], rtol=1e-4, atol=1e-5)


def test_cli_transfers_from_a_file_cached_and_uncached_agree(base_file: Path, out: Path):
    for cache in ("true", "false"):
        cli(
            *FAST,
            "paradigm=transfer",
            f"backbone.weights={base_file}",
            "compare=none",
            f"paradigm.cache_features={cache}",
            output_root=out,
        )
    cached, uncached = (summary(d) for d in run_dirs(out, "transfer"))
    assert cached["notes"][0].startswith("features cached: yes")
    assert uncached["notes"][0].startswith("features cached: no")
    for key, value in cached["metrics"].items():
        assert value == pytest.approx(uncached["metrics"][key], abs=1e-4), key
    exported = [load_file(str(d / "model.safetensors")) for d in run_dirs(out, "transfer")]
    base = load_file(str(base_file))
    torch.testing.assert_close(
        exported[0]["fc.weight"], exported[1]["fc.weight"], rtol=1e-4, atol=1e-5
    )
    for export in exported:  # the whole model is exported, its frozen layers the base model's
        assert torch.equal(export["layer2.0.bn1.running_mean"], base["layer2.0.bn1.running_mean"])
        assert torch.equal(export["conv1.0.weight"], base["conv1.0.weight"])


def test_default_run_trains_a_source_stage_and_compares_with_scratch(out: Path):
    cli(*FAST, "paradigm=transfer", "source.max_epochs=1", output_root=out)
    result = summary(run_dirs(out, "transfer")[0])
    metrics = result["metrics"]
    assert metrics["gain/test/acc"] == pytest.approx(
        metrics["test/acc"] - metrics["scratch/test/acc"]
    )
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {"transfer", "scratch", "transfer - scratch"}
    assert rows["transfer"]["trainable_params"] < rows["transfer"]["total_params"]
    assert rows["transfer"]["total_params"] == rows["scratch"]["total_params"]
    assert list((out / "cache" / "source").iterdir()), "the source stage was not cached"


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"cache_features": True, "replace_last_blocks": 1}, "paradigm.cache_features=True"),
        ({"replace_last_blocks": 9}, "paradigm.replace_last_blocks=9"),
    ],
)
def test_impossible_settings_are_refused_before_training(settings: dict, message: str):
    context = SimpleNamespace(backbone={**SPEC, "drop_rate": 0.0})
    with pytest.raises(ConfigError, match=re.escape(message)):
        Transfer(OPTIMIZER, SCHEDULER, baseline=None, **settings).check(context, _digits())


def test_cache_is_skipped_with_a_reason_where_invalid():
    transfer = Transfer(OPTIMIZER, SCHEDULER, baseline=None)
    context = SimpleNamespace(backbone={**SPEC, "drop_path_rate": 0.1})
    assert transfer.check(context, _digits()) is False
    assert "drop-path" in transfer.blockers[0]


def test_cli_refuses_in_one_line(out: Path):
    process = cli(*FAST, "paradigm=transfer", "backbone.weights=none", output_root=out, check=False)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert "backbone.weights='none'" in process.stderr
    assert not out.exists() or not any(out.rglob("*.ckpt")), "something trained"


def test_file_backed_data_without_augmentation_caches_its_features(tmp_path: Path):
    """Not only in-memory data: image files read every epoch with the evaluation transform
    give the same features every epoch, so transfer caches them, in the loader's order."""
    root = str(image_folder(tmp_path))
    files = {"backbone": "test_resnet", "image_size": 32, "loader": {"num_workers": 0}}
    data = ImageFolderDataModule(root=root, augment={"enabled": False}, batch_size=16, **files)
    data.setup("fit")
    transfer = Transfer(OPTIMIZER, SCHEDULER, baseline=None)
    assert transfer.check(SimpleNamespace(backbone=SPEC), data) is True, transfer.blockers
    torch.manual_seed(0)
    model, _ = transfer.build(SPEC, "none", data.num_classes)
    cached = FeatureData(data, model)
    model.eval()
    images, _ = next(iter(data.train_dataloader()))
    features, _ = next(iter(cached.train_dataloader()))
    torch.testing.assert_close(features, pooled_features(model, images), rtol=1e-4, atol=1e-5)
    augmented = ImageFolderDataModule(root=root, **files)
    assert transfer.check(SimpleNamespace(backbone=SPEC), augmented) is False
    assert transfer.blockers == ["the training data is randomly augmented"]
