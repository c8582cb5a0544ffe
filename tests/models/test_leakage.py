"""No leakage: a source stage, teacher or transfer set never trains on the target's
validation or test images, and no shipped scenario does."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.digits import DigitsDataModule
from paradigms.models.leakage import overlap
from tests.helpers import composed


def test_all_classes_as_source_of_digits_5_to_9_leaks_their_test_images():
    target = DigitsDataModule(classes=[5, 6, 7, 8, 9])
    leaked = overlap(DigitsDataModule(classes=None), target)
    assert leaked["test"] == (92, 135)
    assert leaked["val"][0] > 0
    assert not overlap(DigitsDataModule(classes=[0, 1, 2, 3, 4]), target)


def test_sample_ids_name_the_images_each_split_holds():
    data = DigitsDataModule(classes=[5, 6, 7, 8, 9], train_per_class=10, shift={"rotate": 30})
    data.setup("fit")
    ids = data.sample_ids()
    assert {k: len(v) for k, v in ids.items()} == {k: len(v) for k, v in data.splits.items()}
    assert not set(ids["train"]) & (set(ids["val"]) | set(ids["test"]))
    # the shift changes pixels, not which images: the clean data holds the same ones
    assert DigitsDataModule(classes=[5, 6, 7, 8, 9], train_per_class=10).sample_ids() == ids


def _pretraining_data(paradigm: str) -> list[dict]:
    cfg = composed([f"paradigm={paradigm}"])
    if paradigm == "distill":
        return [cfg.paradigm.teacher_source.data, cfg.paradigm.transfer_data]
    return [cfg.source.data]


@pytest.mark.parametrize("paradigm", ["transfer", "finetune", "distill"])
def test_no_shipped_scenario_leaks(paradigm: str):
    cfg = composed([f"paradigm={paradigm}"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    target = instantiate(data)
    for overrides in _pretraining_data(paradigm):
        trained = instantiate({**data, **OmegaConf.to_container(overrides, resolve=True)})
        assert not overlap(trained, target), overrides
