"""No leakage: a model trained before the target (a source stage, a teacher, a transfer set)
must not have seen the target's validation or test images.

A datamodule names its samples with ``sample_ids()`` ({split: ids}: the original image's
index for digits, the file path or dataset row for file-backed data); a datamodule without
it cannot be checked. A weights file the user gives cannot be checked either.
"""

from __future__ import annotations

from typing import Any

from paradigms.contract import Context
from paradigms.runner.errors import ConfigError

HELD_OUT = ("test", "val")


def overlap(trained: Any, target: Any) -> dict[str, tuple[int, int]]:
    """{held-out split of ``target``: (its images in ``trained``'s training split, its size)},
    only the splits that overlap; empty when either datamodule cannot name its samples."""
    if not (hasattr(trained, "sample_ids") and hasattr(target, "sample_ids")):
        return {}
    seen = set(trained.sample_ids()["train"])
    held_out = target.sample_ids()
    found = {
        split: (len(seen.intersection(held_out[split])), len(held_out[split])) for split in HELD_OUT
    }
    return {split: counts for split, counts in found.items() if counts[0]}


def check_no_leakage(context: Context, overrides: dict[str, Any], key: str, who: str) -> None:
    """Stops when ``who``, trained on the run's data with ``overrides`` (at ``key``), would
    train on images of the run's validation or test split."""
    leaked = overlap(context.datamodule(overrides), context.datamodule())
    if not leaked:
        return
    counts = " and ".join(f"{n} of {size} {split}" for split, (n, size) in leaked.items())
    raise ConfigError(
        key,
        dict(overrides),
        f"{who} would train on {counts} images of the target, so its scores would be inflated",
        "keep data.classes and data.split_seed as the target's (the same split) or give "
        f"{key} classes disjoint from the target's",
    )
