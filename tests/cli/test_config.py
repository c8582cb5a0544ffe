"""Every config file composes, documents its values, and every paradigm has its YAML."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF, ROOT, composed, every_option

ALL_YAML = sorted(CONF.rglob("*.yaml"))
OPTIONS = every_option()


@pytest.mark.parametrize("overrides", OPTIONS, ids=[" ".join(o) for o in OPTIONS])
def test_every_option_composes_and_resolves(overrides: list[str]) -> None:
    cfg = composed(overrides)
    for key, value in cfg.items():
        if key != "hydra" and OmegaConf.is_config(value):
            OmegaConf.to_container(value, resolve=True)
    group, option = overrides[-1].lstrip("+").split("=")
    assert cfg.hydra.runtime.choices[group] == option


OPTIMIZING = [p for p in ALL_YAML if "optimized_metric" in OmegaConf.load(p)]


@pytest.mark.parametrize(
    "path",
    OPTIMIZING,
    ids=[str(p.relative_to(CONF)) for p in OPTIMIZING],
)
def test_no_config_optimizes_a_test_metric(path: Path) -> None:
    """A search or experiment that ranks its jobs on the test set reports a biased best."""
    metric = OmegaConf.load(path)["optimized_metric"]
    assert "test" not in metric.split("/"), f"{path.name} optimizes {metric}"


def test_every_search_and_experiment_sets_its_metric() -> None:
    for folder in ("hparams_search", "experiment"):
        for path in (CONF / folder).glob("*.yaml"):
            assert path in OPTIMIZING, f"{folder}/{path.name} leaves optimized_metric to chance"


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(CONF)) for p in ALL_YAML])
def test_every_value_has_a_comment(path: Path) -> None:
    """A line that sets a scalar value carries a `#` comment saying what it does."""
    undocumented, block = [], None  # block: the indent of a `key: |` whose text lines follow
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block is not None and (not stripped or indent > block):
            continue  # a line of a block scalar's text (the help template)
        block = indent if re.match(r"^[\w.-]+:\s*\|-?\s*(#|$)", stripped) else None
        if not stripped or stripped.startswith(("#", "-", "defaults:")) or stripped == "{}":
            continue
        if (
            re.match(r"^[\w.@/-]+:\s*\S", stripped)
            and "#" not in stripped
            and not stripped.startswith("_target_")
        ):
            undocumented.append(f"{number}: {stripped}")
    assert not undocumented, f"{path.name} has values without a comment: {undocumented}"


def test_every_paradigm_yaml_points_to_a_class_with_the_contract() -> None:
    for path in sorted((CONF / "paradigm").glob("*.yaml")):
        target = OmegaConf.load(path)["_target_"]
        module, name = target.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        assert callable(getattr(cls, "run", None)) and callable(getattr(cls, "reports", None)), (
            target
        )
        assert isinstance(cls.default_compare, tuple), target
        assert hasattr(cls, "needs"), target


def test_every_paradigm_module_has_its_yaml() -> None:
    """A module (or package) of paradigms/ that defines a paradigm's ``run`` has its YAML."""
    yamls = {p.stem for p in (CONF / "paradigm").glob("*.yaml")}
    sources = list((ROOT / "paradigms").rglob("*.py"))
    paradigms = {
        p.relative_to(ROOT / "paradigms").parts[0].removesuffix(".py")
        for p in sources
        if "def run(self, context" in p.read_text() and p.stem != "contract"
    }
    assert paradigms and paradigms <= yamls, f"no conf/paradigm/<name>.yaml for {paradigms - yamls}"
