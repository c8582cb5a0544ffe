"""DDP over two CPU processes (gloo): one run directory, and the result of a single process."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import FAST, cli, run_dirs, summary


def test_ddp_cpu_makes_one_run_dir_and_matches_one_process(tmp_path: Path) -> None:
    args = ["paradigm=scratch", *FAST, "trainer.max_epochs=4"]
    cli(*args, output_root=tmp_path / "single")
    cli(*args, "trainer=ddp_cpu", output_root=tmp_path / "ddp")
    (ddp_dir,) = run_dirs(tmp_path / "ddp", "scratch")
    (single_dir,) = run_dirs(tmp_path / "single", "scratch")
    ddp, single = summary(ddp_dir)["metrics"], summary(single_dir)["metrics"]
    assert ddp["test/acc"] > 0.85
    assert abs(ddp["test/acc"] - single["test/acc"]) < 0.08, (ddp, single)
    assert len(list((tmp_path / "ddp").rglob("summary.json"))) == 1
