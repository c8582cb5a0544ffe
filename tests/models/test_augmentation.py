"""The one check behind transfer's feature cache and distillation's teacher cache: are the
training inputs the same every epoch?"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from datamodules.digits import DigitsDataModule
from datamodules.image_folder import ImageFolderDataModule
from paradigms.models.augmentation import random_inputs
from tests.datamodules.images_on_disk import image_folder

FILES = {"backbone": "test_resnet", "image_size": 32, "loader": {"num_workers": 0}}


@pytest.mark.parametrize(
    ("settings", "random"),
    [
        ({}, True),  # timm's training transform: random crops and flips
        ({"augment": {"enabled": False}}, False),
        ({"in_memory": True}, False),  # decoded once with the evaluation transform
    ],
    ids=["augmented", "augment_disabled", "in_memory"],
)
def test_file_backed_data_is_random_unless_augmentation_is_off(
    tmp_path: Path, settings: dict, random: bool
) -> None:
    data = ImageFolderDataModule(root=str(image_folder(tmp_path)), **FILES, **settings)
    assert (random_inputs(data) is not None) is random


def test_in_memory_data_is_random_only_with_its_augmentation() -> None:
    assert random_inputs(DigitsDataModule()) is None
    assert "randomly augmented" in random_inputs(DigitsDataModule(translate=0.1))


def test_a_datamodule_that_does_not_say_counts_as_random() -> None:
    assert "does not declare random_augmentation" in random_inputs(pl.LightningDataModule())
