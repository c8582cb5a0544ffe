"""Seeds as intervals: the t interval, the pairing by seed, ``seeds=N`` and the sweep report's
table of configurations over seeds (read back from real job directories)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from paradigms.runner.errors import ConfigError
from paradigms.runner.intervals import interval, paired
from paradigms.runner.seeds import expand_seeds
from paradigms.runner.sweep_report import write_report
from tests.helpers import cli


def test_the_interval_is_students_t_of_the_mean() -> None:
    spread = interval([0.80, 0.82, 0.84])
    assert spread.mean == pytest.approx(0.82)
    assert spread.std == pytest.approx(0.02)
    # t(0.975, 2 degrees of freedom) = 4.3027: wider than the normal 1.96 with three seeds
    assert spread.half_width == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-4)
    assert math.isnan(interval([0.8]).low) and interval([0.8, math.nan]).n == 1


def test_pairing_by_seed_removes_what_both_models_share() -> None:
    model, baseline = [0.70, 0.80, 0.90], [0.68, 0.785, 0.875]  # seeds move both alike
    gain = paired(model, baseline)
    assert gain.mean == pytest.approx(0.02)
    assert gain.low > 0, "every seed gains: the paired interval excludes zero"
    unpaired = interval(model).half_width + interval(baseline).half_width
    assert gain.half_width < unpaired / 10


def test_seeds_becomes_a_sweep_of_the_seed() -> None:
    assert expand_seeds(["paradigm=scratch", "seeds=3"]) == [
        "-m",
        "paradigm=scratch",
        "seed=range(0,3)",
    ]
    assert expand_seeds(["-m", "seed=10", "lr=1,2", "seeds=2"]) == [
        "-m",
        "lr=1,2",
        "seed=range(10,12)",
    ]
    assert expand_seeds(["seed=3"]) == ["seed=3"]
    with pytest.raises(ConfigError, match="seeds=0: must be a whole number"):
        expand_seeds(["seeds=0"])
    with pytest.raises(ConfigError, match="seeds= sweeps the seed itself"):
        expand_seeds(["seed=0,1", "seeds=2"])


def write_job(sweep: Path, num: int, overrides: list[str], metrics: dict[str, float]) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    record = {"num": num, "status": "completed", "error": None, "wall_time_s": 1.0}
    (job / "job.json").write_text(json.dumps(record))
    (job / "summary.json").write_text(json.dumps({"metrics": metrics}))


def test_the_report_groups_seeds_and_pairs_the_baseline(tmp_path: Path) -> None:
    scores = {  # (method, seed) -> (model test/acc, its scratch baseline's)
        ("full", 0): (0.90, 0.80),
        ("full", 1): (0.92, 0.83),
        ("full", 2): (0.94, 0.84),
        ("lp_ft", 0): (0.95, 0.80),
        ("lp_ft", 1): (0.96, 0.83),
        ("lp_ft", 2): (0.97, 0.84),
    }
    for num, ((method, seed), (acc, scratch)) in enumerate(scores.items()):
        metrics = {"val/acc": acc + 0.01, "test/acc": acc, "scratch/test/acc": scratch}
        write_job(tmp_path, num, [f"paradigm/method={method}", f"seed={seed}"], metrics)

    written = write_report(tmp_path, "val/acc", Console(file=io.StringIO()))

    assert tmp_path / "report_seeds.csv" in written and (tmp_path / "report.png").is_file()
    rows = list(csv.DictReader((tmp_path / "report_seeds.csv").open()))
    assert [(r["paradigm/method"], r["seeds"]) for r in rows] == [("full", "3"), ("lp_ft", "3")]
    full = rows[0]
    assert float(full["test/acc mean"]) == pytest.approx(0.92)
    expected = interval([0.90, 0.92, 0.94])
    assert float(full["test/acc low"]) == pytest.approx(expected.low, abs=1e-4)
    gain = paired([0.90, 0.92, 0.94], [0.80, 0.83, 0.84])
    assert float(full["gain_vs_scratch/test/acc mean"]) == pytest.approx(gain.mean, abs=1e-4)
    assert float(full["gain_vs_scratch/test/acc high"]) == pytest.approx(gain.high, abs=1e-4)


def test_seeds_runs_the_sweep_and_a_test_metric_is_warned_about(out: Path) -> None:
    process = cli(
        "paradigm=scratch",
        "backbone=test_resnet",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        "optimized_metric=test/acc",
        "seeds=2",
        output_root=out,
    )
    warnings = [line for line in process.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "optimistically biased" in warnings[0]
    (sweep,) = sorted((out / "multirun").glob("*/*"))
    rows = list(csv.DictReader((sweep / "report_seeds.csv").open()))
    assert len(rows) == 1 and rows[0]["seeds"] == "2"
    seeds = sorted(OmegaConf.load(p)[-1] for p in sweep.glob("*/.hydra/overrides.yaml"))
    assert seeds == ["seed=0", "seed=1"]
