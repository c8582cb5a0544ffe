"""``python cli.py --help``: the listings its template (conf/hydra/help/paradigms.yaml) shows,
read from the config folders, which are the registry: a new YAML shows up here by itself.

Groups a user does not choose (``images``, ``scenario``: applied by data and paradigm) and the
``default`` bases other options include (``trainer/default``) are left out.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"
INTERNAL = {"images", "scenario", "hydra/sweeper", "hydra/help"}
BASE = "default"  # an option other options of its group build on
WIDTH = 96


def _options(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != BASE)


def user_groups(conf: Path = CONF) -> dict[str, list[str]]:
    """Each group a user picks an option of (``paradigm/method``), with its options."""
    groups = {}
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf).as_posix()
        if group.split("/")[0] in INTERNAL or group in INTERNAL or group == "paradigm":
            continue
        if options := _options(folder):
            groups[group] = options
    return groups


def _defaults(conf: Path) -> dict[str, str]:
    entries = OmegaConf.to_container(OmegaConf.load(conf / "config.yaml").defaults)
    return {k: str(v) for entry in entries if isinstance(entry, dict) for k, v in entry.items()}


def _first_sentence(path: Path) -> str:
    """The opening of a YAML's leading comment, to its first full stop or semicolon."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("# @package"):
            break
        lines.append(line.lstrip("# "))
    text = " ".join(lines)
    for stop in (". ", "; ", ": the"):
        text = text.split(stop)[0]
    return textwrap.shorten(text.rstrip("."), 80, placeholder=" ...")


def listing(what: str, conf: Path = CONF) -> str:
    """``paradigms``: one line per paradigm; ``groups``: each user-facing group's options."""
    if what == "paradigms":
        paths = sorted((conf / "paradigm").glob("*.yaml"))
        return "\n".join(f"  {p.stem:<10} {_first_sentence(p)}" for p in paths)
    defaults = _defaults(conf)
    lines = []
    for group, options in user_groups(conf).items():
        shown = ", ".join(f"{o} (default)" if defaults.get(group) == o else o for o in options)
        lines += textwrap.wrap(
            shown, WIDTH, initial_indent=f"  {group:<18} ", subsequent_indent=" " * 21
        )
    return "\n".join(lines)


def register_resolver() -> None:
    """Makes ``${help:paradigms}`` and ``${help:groups}`` usable in the help template."""
    if not OmegaConf.has_resolver("help"):
        OmegaConf.register_new_resolver("help", listing)
