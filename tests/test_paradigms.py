"""A real tiny training per paradigm (every conf/paradigm/*.yaml), and what each must show."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import FAST, ROOT, cli, run_dirs, summary

PARADIGMS = sorted(p.stem for p in (ROOT / "conf" / "paradigm").glob("*.yaml"))
# Paradigm-specific overrides that keep the smoke run to a few seconds.
QUICK = {
    "finetune": ["source.max_epochs=3", "trainer.max_epochs=8"],
    "multitask": ["trainer.max_epochs=6"],
    "distill": ["paradigm.teacher.name=resnet10t", "paradigm.teacher_source.max_epochs=3"],
}


# The validation metric each paradigm selects on (multitask: its tasks' mean score).
VALIDATION = {"multitask": "val/score"}


@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_each_paradigm_trains_and_reports(paradigm: str, out: Path) -> None:
    metric = VALIDATION.get(paradigm, "val/acc")
    cli(
        f"paradigm={paradigm}",
        *FAST,
        *QUICK.get(paradigm, []),
        "compare=none",
        f"optimized_metric={metric}",
        output_root=out,
    )
    (run_dir,) = run_dirs(out, paradigm)
    result = summary(run_dir)
    assert result["optimized_metric"] == metric
    assert result["metrics"][metric] > 0.3, f"{metric}: well above chance"
    tested = metric.replace("val/", "test/")
    assert result["metrics"][tested] > 0.3, "the selected model is reported on test beside it"
    assert all(metric in row["metrics"] for row in result["rows"]), "every row shows selection"
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_scratch_learns_digits_and_writes_its_run_directory(out: Path) -> None:
    cli("paradigm=scratch", *FAST, "trainer.max_epochs=4", output_root=out)
    (run_dir,) = run_dirs(out, "scratch")
    assert summary(run_dir)["metrics"]["test/acc"] > 0.9
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in names and any(n.startswith("best-") for n in names)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "val/acc" in header and "train/loss_step" in header
    epochs = [
        float(r["val/acc"])
        for r in csv.DictReader((run_dir / "metrics.csv").open())
        if r["val/acc"]
    ]
    assert len(epochs) == 4, "one validation point per epoch: the reported pass is not logged"
    assert summary(run_dir)["metrics"]["val/acc"] == pytest.approx(max(epochs), abs=1e-6), (
        "the reported val/acc is the one checkpoint selection saw"
    )
    assert (run_dir / "model.safetensors").is_file()


def test_finetune_beats_its_source_model_and_reuses_the_cached_source(out: Path) -> None:
    args = [
        "paradigm=finetune",
        *FAST,
        "trainer.max_epochs=10",
        "source.max_epochs=4",
        "compare=scratch",
    ]
    cli(*args, output_root=out)
    cli(*args, "seed=0", output_root=out)
    results = [summary(d) for d in run_dirs(out, "finetune")]
    metrics = results[0]["metrics"]
    assert metrics["test/acc"] > metrics["source/test/acc"] + 0.2, (
        "fine-tuning must adapt to the shift"
    )
    assert {"scratch/test/acc", "source/test/acc", "test/acc"} <= metrics.keys()
    assert len(list((out / "cache" / "source").iterdir())) == 1, "the source stage is cached once"
    assert results[1]["metrics"] == metrics, (
        "same seed, same numbers (and the cached source is reused)"
    )
