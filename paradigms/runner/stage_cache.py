"""Stages trained once and reused: a source model, a scratch or single-task baseline.

A stage whose result depends only on what defines it (backbone, data, recipe, trainer, seed),
not on the run around it, lives in ``cache_dir/<kind>/<hash of the definition>``. The first
run trains it in a directory of its own (``<hash>.tmp-<run>-<hash of its path>``, which a resumed run continues)
and publishes it with one atomic rename; a parallel job that finished first wins and the
other's copy is dropped, so concurrent sweep jobs never see a half-written stage. A sweep
over a paradigm's own knobs (weighting, method, strategy) then trains each baseline once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities import rank_zero_only

from paradigms.runner.stages import RESULTS, barrier

COUNTS = "params.json"  # a cached stage's (trainable, total) parameter counts, for its table row
# Callbacks that show or log but never change what a stage learns: left out of its definition.
DISPLAY_ONLY = ("ProgressBar", "ModelSummary", "LearningRateMonitor")


def cache_key(definition: dict[str, Any]) -> str:
    """A short, stable hash of everything that defines a stage."""
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_definition(
    trainer: dict[str, Any], callbacks: dict[str, Any], nonfinite: str
) -> dict[str, Any]:
    """What of a run's training setup a stage's result depends on."""
    kept = {
        name: spec
        for name, spec in callbacks.items()
        if spec is not None and not spec["_target_"].endswith(DISPLAY_ONLY)
    }
    return {"trainer": trainer, "callbacks": kept, "nonfinite": nonfinite}


def cached_stage(
    cache_dir: Path,
    kind: str,
    definition: dict[str, Any],
    run_dir: Path,
    train: Callable[[Path], Any],
) -> Path:
    """The directory of the finished stage ``definition`` defines, trained by ``train(dir)``
    unless the cache holds it. Its work directory is named after the whole run directory
    (jobs of different sweeps share names such as ``0``), so a resumed run finds it."""
    target = cache_dir / kind / cache_key(definition)
    if (target / RESULTS).is_file():
        return target
    run = cache_key({"run": str(run_dir.resolve())})[:8]
    work = target.with_name(f"{target.name}.tmp-{run_dir.name}-{run}")
    train(work)
    if rank_zero_only.rank == 0:
        if not target.exists():
            os.replace(work, target)
        shutil.rmtree(work, ignore_errors=True)
    barrier()
    return target


def show_in_run(stage: Path, stage_dir: Path) -> None:
    """Puts a cached stage's files (not its checkpoints) in the run's ``stage_dir``, as
    hard links where the file system allows, so the run directory is complete and its plots
    are drawn; ``cached_from.txt`` names the cache entry."""
    if rank_zero_only.rank != 0 or (stage_dir / RESULTS).is_file():
        return
    stage_dir.mkdir(parents=True, exist_ok=True)
    for path in stage.rglob("*"):
        relative = path.relative_to(stage)
        if path.is_dir() or relative.parts[0] == "checkpoints":
            continue
        (stage_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, stage_dir / relative)
        except OSError:
            shutil.copy2(path, stage_dir / relative)
    (stage_dir / "cached_from.txt").write_text(f"{stage.resolve()}\n")


def write_counts(stage_dir: Path, trainable: int | None, total: int | None) -> None:
    """Keeps a stage's parameter counts beside its results (rank zero)."""
    if rank_zero_only.rank == 0:
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / COUNTS).write_text(json.dumps({"trainable": trainable, "total": total}))


def read_results(stage: Path) -> tuple[dict[str, float], int | None, int | None]:
    """A finished stage's metrics and its (trainable, total) parameter counts."""
    counts = json.loads((stage / COUNTS).read_text())
    return json.loads((stage / RESULTS).read_text()), counts["trainable"], counts["total"]
