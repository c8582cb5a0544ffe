"""Hydra multirun: one sweep directory holding one directory per job."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import FAST, cli


def test_a_seed_sweep_makes_one_sweep_dir_with_a_run_per_seed(out: Path) -> None:
    cli("-m", "paradigm=scratch", *FAST, "trainer.max_epochs=1", "seed=0,1", output_root=out)
    (sweep,) = (out / "multirun").glob("*/*")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    seeds = [(sweep / job / ".hydra" / "config.yaml").read_text() for job in ("0", "1")]
    assert "seed: 0" in seeds[0] and "seed: 1" in seeds[1]
    assert all((sweep / job / "summary.json").is_file() for job in ("0", "1"))
