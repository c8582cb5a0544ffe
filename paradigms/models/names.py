"""timm's model names without importing timm (or torch): read from timm's own source.

Importing torch, Lightning and timm takes seconds; a typo in ``backbone.name`` should be
answered at once. timm registers every architecture with ``@register_model`` on a function
of that name, and renamed ones with ``register_model_deprecations``; those are read from the
installed package's files (about 50 ms).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from functools import cache
from pathlib import Path

_REGISTERED = re.compile(r"@register_model\s*\ndef\s+(\w+)\s*\(")
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_QUOTED_KEY = re.compile(r"['\"]([\w.-]+)['\"]\s*:")
HUB_PREFIXES = ("hf-hub:", "hf_hub:")  # timm.create_model fetches these from the Hugging Face Hub


@cache
def timm_model_names() -> frozenset[str]:
    """Every architecture name timm's ``create_model`` accepts (without pretrained tags)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return frozenset()
    names: set[str] = set()
    for path in (Path(spec.origin).parent / "models").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(_REGISTERED.findall(text))
        for block in _DEPRECATIONS.findall(text):
            names.update(key.split(".")[0] for key in _QUOTED_KEY.findall(block))
    return frozenset(names)


def is_hub_name(name: str) -> bool:
    """Whether ``name`` is a Hub model (``hf-hub:timm/resnet18.a1_in1k``), which timm fetches
    at run time: known only once a network answers."""
    return name.startswith(HUB_PREFIXES) and len(name) > len(HUB_PREFIXES[0])


def unknown_model_hint(name: str) -> str | None:
    """None when timm knows ``name`` (an architecture, optionally with a ``.tag``); else the
    closest known names as a hint."""
    names = timm_model_names()
    arch = name.split(".")[0]
    if not names or arch in names or is_hub_name(name):
        return None
    close = difflib.get_close_matches(arch, sorted(names), n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
