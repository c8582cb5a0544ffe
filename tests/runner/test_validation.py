"""The config checks: every option of every group validates before torch is imported, each
component's schema is found beside it and names only settings its YAML has, and a bad value
anywhere is one error naming its full key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import Schema, check_node, job_config, schema_for, validate
from tests.helpers import ROOT, composed, every_option

OPTIONS = every_option()
OURS = ("paradigms.", "datamodules.")  # packages whose components must declare their settings


def validated(overrides: list[str], folder: str) -> DictConfig:
    """The composed config, validated with its mandatory values (``???``) and the folder its
    data reads (``data.root``) set to ``folder``."""
    cfg = composed(overrides)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    paths = {*OmegaConf.missing_keys(job), *(["data.root"] if "root" in cfg.data else [])}
    if paths:
        cfg = composed([*overrides, *(f"{key}={folder}" for key in sorted(paths))])
    validate(cfg)
    return cfg


@pytest.mark.parametrize("overrides", OPTIONS, ids=[" ".join(o) for o in OPTIONS])
def test_every_option_of_every_group_validates(overrides: list[str], tmp_path: Path) -> None:
    validated(overrides, str(tmp_path))


def test_validation_and_every_schema_import_no_torch() -> None:
    schemas = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for package in ("paradigms", "datamodules")
        for p in sorted((ROOT / package).rglob("schema.py"))
    ]
    assert len(schemas) >= 8, schemas
    code = (
        "import importlib, sys\n"
        "from tests.helpers import composed\n"
        "from paradigms.runner.validation import validate\n"
        "import cli\n"  # what `python cli.py` imports before validating
        f"for name in {schemas!r}: importlib.import_module(name)\n"
        "validate(composed(['paradigm=federated', 'paradigm/privacy=dp']))\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    process = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr[-2000:]


def _targets(node: Any, seen: dict[str, set[str]]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            seen.setdefault(node["_target_"], set()).update(node)
        for value in node.values():
            _targets(value, seen)


def test_every_component_with_settings_has_a_schema_of_settings_it_has(tmp_path: Path) -> None:
    seen: dict[str, set[str]] = {}
    for overrides in OPTIONS:
        _targets(job_config(validated(overrides, str(tmp_path))), seen)
    keys: dict[type[Schema], set[str]] = {}
    for target, names in seen.items():
        schema = schema_for(target)
        settings = names - {"_target_", "_partial_"}
        if target.startswith(OURS) and settings:
            assert schema is not None, f"{target} has settings {sorted(settings)} but no schema"
        if schema is not None:
            keys.setdefault(schema, set()).update(names)
    assert len(keys) > 20, "schemas were found for the components"
    for schema, names in keys.items():
        stale = set(schema.settings()) - names
        assert not stale, f"{schema.__module__}.{schema.__name__} declares {stale}, no YAML has"


@pytest.mark.parametrize(
    ("node", "at", "key", "why"),
    [
        ({"_target_": "paradigms.federated.strategies.Krum", "byzantine": -1}, "paradigm.strategy",
         "paradigm.strategy.byzantine", "must be a whole number >= 0"),
        ({"_target_": "paradigms.federated.strategies.FedAdam", "tau": 0.0}, "paradigm.strategy",
         "paradigm.strategy.tau", "must be > 0"),
        ({"_target_": "paradigms.federated.strategies.FedAdam", "server_lr": True}, "s",
         "s.server_lr", "must be > 0"),
        ({"_target_": "paradigms.transfer.paradigm.Transfer", "cache_features": "yes"}, "paradigm",
         "paradigm.cache_features", "must be one of auto, true, false"),
        ({"_target_": "paradigms.transfer.paradigm.Transfer", "head": {"hidden": [0]}}, "paradigm",
         "paradigm.head.hidden", "must be a list; each item must be a whole number >= 1"),
        ({"_target_": "datamodules.digits.DigitsDataModule", "root": "???"}, "data",
         "data.root", "must be set"),
        ({"_target_": "paradigms.finetune.methods.Partial", "patterns": ["("]}, "paradigm.method",
         "paradigm.method.patterns", "must be a list; each item must be a regular expression"),
    ],
)  # fmt: skip
def test_a_bad_value_anywhere_is_one_error_with_its_full_key(
    node: dict, at: str, key: str, why: str
) -> None:
    with pytest.raises(ConfigError) as error:
        check_node(node, at)
    assert error.value.key == key and error.value.why.startswith(why), error.value


def test_a_component_without_a_schema_is_walked_but_not_checked() -> None:
    assert schema_for("pytorch_lightning.callbacks.ModelCheckpoint") is None
    assert schema_for("paradigms.runner.csv_logger.ResumableCSVLogger") is None
    node = {"_target_": "no.such.Thing", "lr": -1, "inner": {"_target_": "paradigms.federated.strategies.FedProx", "mu": -1}}  # fmt: skip
    with pytest.raises(ConfigError, match="x.inner.mu"):
        check_node(node, "x")
