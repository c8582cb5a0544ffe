"""Unknown config-group options stop before Hydra composes, naming the closest options."""

from __future__ import annotations

from pathlib import Path

import pytest

from paradigms.runner.choices import check_choices
from paradigms.runner.errors import ConfigError

CONF = Path(__file__).parents[2] / "conf"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["paradigm=finetun"],
            r"^paradigm='finetun': no such option\. Fix: did you mean finetune\?",
        ),
        (["paradigm/method=lp-ft"], r"did you mean lp_ft\?.*full, gradual"),
        (["-m", "backbone=resnet10t,resnet_18"], r"^backbone='resnet_18'.*did you mean resnet18"),
        (["backbone=resnet34"], r"resnet34 is a timm model: use backbone\.name=resnet34"),
        (["backbone=no_such"], r"use one of .*resnet10t.*backbone\.name=<timm name>"),
        (["logger=[csv,tensorbord]"], r"^logger='tensorbord'.*did you mean tensorboard or"),
    ],
)
def test_an_unknown_option_names_the_group_and_the_closest_options(
    args: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_choices(args, CONF)


@pytest.mark.parametrize(
    "args",
    [
        ["paradigm=scratch", "backbone=lcnet_050", "backbone.name=hf-hub:timm/resnet18.a1_in1k"],
        ["logger=[csv,tensorboard,mlflow]"],
        ["--help"],
        ["--cfg", "job", "paradigm=federated", "paradigm/strategy=krum"],
        ["-m", "paradigm=scratch,finetune", "hydra/launcher=parallel"],
    ],
)
def test_known_options_and_hydra_flags_pass(args: list[str]) -> None:
    check_choices(args, CONF)
