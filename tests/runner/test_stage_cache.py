"""Baselines trained once: a run that differs from an earlier one only in the paradigm's own
settings reads the earlier run's scratch baseline from the cache, and that cached baseline is
exactly what a fresh training gives."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import FAST, cli, run_dirs, summary

TRANSFER = [
    "paradigm=transfer",
    *FAST,
    "source.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "compare=scratch",
]


def test_a_baseline_trains_once_and_equals_a_fresh_one(tmp_path: Path) -> None:
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    cli(*TRANSFER, output_root=shared)
    cli(*TRANSFER, "paradigm.label_smoothing=0.1", output_root=shared)
    cli(*TRANSFER, "paradigm.label_smoothing=0.1", output_root=fresh)

    first, second = (summary(d)["metrics"] for d in run_dirs(shared, "transfer"))
    (alone,) = (summary(d)["metrics"] for d in run_dirs(fresh, "transfer"))
    assert first["test/loss"] != second["test/loss"], "the transfer models differ"
    assert len(list((shared / "cache" / "scratch").iterdir())) == 1, "trained once"
    baseline = {k: v for k, v in second.items() if k.startswith("scratch/")}
    assert baseline == {k: v for k, v in first.items() if k.startswith("scratch/")}
    assert baseline == {k: v for k, v in alone.items() if k.startswith("scratch/")}, (
        "the cached baseline is the one a fresh training gives"
    )
    shown = run_dirs(shared, "transfer")[1] / "compare" / "scratch"
    assert (shown / "cached_from.txt").is_file() and (shown / "model.safetensors").is_file()
    assert (shown / "learning_curves.png").is_file(), "the run still plots its baseline"
