"""Config-group options named on the command line, checked before Hydra composes anything:
an option that has no YAML (``paradigm/method=sideways``) stops with one line listing the
options there are, as every other bad input does, instead of Hydra's multi-line report."""

from __future__ import annotations

import difflib
from pathlib import Path

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from paradigms.models.names import unknown_model_hint
from paradigms.runner.errors import ConfigError

FILE = "file://"
ANY_TIMM = "backbone"  # its options are a few timm models; any other is backbone.name=<name>


def _search_dirs(overrides: list, conf: Path) -> list[Path] | None:
    """The config folders: ``conf`` and those ``hydra.searchpath`` adds (None when one is
    not a folder, e.g. a ``pkg://`` path, which Hydra alone can read)."""
    dirs = [conf]
    for override in overrides:
        if override.key_or_group == "hydra.searchpath":
            for entry in override.value() or []:
                if not str(entry).startswith(FILE):
                    return None
                dirs.append(Path(str(entry)[len(FILE) :]))
    return dirs


def _values(override) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    if isinstance(value, list):  # several options of one group: logger=[csv,tensorboard]
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def check_choices(args: list[str], conf: Path) -> None:
    """Raises ConfigError for the first ``group=option`` in ``args`` (the command line after
    the program) whose group is a folder of the config search path without ``option.yaml``
    (Hydra's own ``hydra/*`` groups aside)."""
    try:
        overrides = OverridesParser.create().parse_overrides(
            get_args_parser().parse_known_args(args)[0].overrides
        )
        dirs = _search_dirs(overrides, conf)
    except (HydraException, SystemExit):
        return  # Hydra reports a malformed command line itself
    for override in overrides if dirs else []:
        group = override.key_or_group
        folders = [d / group for d in dirs if (d / group).is_dir()]
        if override.is_delete() or not folders or group.startswith("hydra/"):
            continue  # hydra/* options also come from Hydra's plugins
        try:
            values = _values(override)
        except HydraException:
            continue  # a sweep Hydra expands itself (glob, range)
        for value in values:
            if not any((folder / f"{value}.yaml").is_file() for folder in folders):
                options = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
                raise ConfigError(group, value, "no such option", _fix(group, value, options))


def _fix(group: str, value: str, options: list[str]) -> str:
    """The closest options first (difflib), then the rest; for a backbone, the timm way."""
    if group == ANY_TIMM and unknown_model_hint(value) is None:
        return f"{value} is a timm model: use backbone.name={value} (any timm model works)"
    close = difflib.get_close_matches(value, options, n=3, cutoff=0.6)
    fix = f"did you mean {' or '.join(close)}? Options: " if close else "use one of "
    fix += ", ".join(options)
    if group == ANY_TIMM:
        fix += "; or any timm model as backbone.name=<timm name>"
    return fix
