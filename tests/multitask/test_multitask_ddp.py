"""A gradient-based multi-task weighting under 2-process DDP on the CPU (gloo), with bf16
autocast and gradient clipping, which manual optimization must honour itself."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import FAST, cli, run_dirs, summary


def test_pcgrad_under_ddp_cpu_with_bf16_and_clipping(out: Path) -> None:
    cli(
        *FAST,
        "paradigm=multitask",
        "paradigm/weighting=pcgrad",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.gradient_clip_val=1.0",
        "trainer.precision=bf16-mixed",
        "compare=none",
        output_root=out,
    )
    runs = run_dirs(out, "multitask")
    assert len(runs) == 1, "both ranks share one run directory"
    metrics = summary(runs[0])["metrics"]
    assert 0 <= metrics["test/digit/acc"] <= 1 and "test/score" in metrics
