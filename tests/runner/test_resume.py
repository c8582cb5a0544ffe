"""A run killed mid-training and resumed ends exactly as an uninterrupted one (CPU, same seed)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST, cli, interrupted, linear_stage, run_dirs, summary

RUN = [*FAST, "paradigm=scratch", "trainer.max_epochs=5"]


def _stop_after_checkpoint(
    output_root: Path, epochs_done: int, run: list[str] = RUN, sig: int = signal.SIGKILL
) -> tuple[Path, subprocess.CompletedProcess]:
    """Starts a run and sends it ``sig`` once ``epochs_done`` epochs are checkpointed."""

    def ready() -> bool:
        dirs = run_dirs(output_root, "scratch")
        metrics = dirs[0] / "metrics.csv" if dirs else None
        if metrics and metrics.is_file() and (dirs[0] / "checkpoints" / "last.ckpt").is_file():
            return len(set(_epochs(dirs[0]))) >= epochs_done
        return False

    process = interrupted([f"paths.output_root={output_root}", *run], ready, sig)
    (run_dir,) = run_dirs(output_root, "scratch")
    assert not (run_dir / "summary.json").exists(), "stopped too late"
    return run_dir, process


def _kill_after_checkpoint(output_root: Path, epochs_done: int, run: list[str] = RUN) -> Path:
    """Starts a run, SIGKILLs it once ``epochs_done`` epochs are checkpointed; returns its dir."""
    return _stop_after_checkpoint(output_root, epochs_done, run)[0]


def _epochs(run_dir: Path) -> list[str]:
    return [
        row["epoch"]
        for row in csv.DictReader((run_dir / "metrics.csv").open())
        if row.get("val/acc")
    ]


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    full = tmp_path / "full"
    cli(*RUN, output_root=full)
    expected = summary(run_dirs(full, "scratch")[0])["metrics"]

    killed = _kill_after_checkpoint(tmp_path / "killed", epochs_done=2)
    cli(f"resume={killed}", output_root=tmp_path / "killed")

    assert run_dirs(tmp_path / "killed", "scratch") == [killed], (
        "resume must reuse the run directory"
    )
    assert summary(killed)["metrics"] == expected
    assert _epochs(killed) == ["0", "1", "2", "3", "4"], (
        "metrics.csv keeps every epoch exactly once"
    )
    assert (killed / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_stop_cleanly_and_resume_exactly(
    tmp_path: Path, sig: int, code: int
) -> None:
    # 8 epochs, stopped after 2: six epochs of margin for the signal to land on a busy machine
    epochs = 8
    run = [*RUN, f"trainer.max_epochs={epochs}"]
    full = tmp_path / "full"
    cli(*run, output_root=full)
    expected = summary(run_dirs(full, "scratch")[0])["metrics"]

    stopped, process = _stop_after_checkpoint(tmp_path / "stopped", 2, run, sig)
    assert process.returncode == code, process.stderr[-2000:]
    message = process.stderr.strip().splitlines()[-1]
    assert f"resume={stopped}" in message, message
    cli(f"resume={stopped}", output_root=tmp_path / "stopped")
    assert summary(stopped)["metrics"] == expected
    assert _epochs(stopped) == [str(epoch) for epoch in range(epochs)]


def test_ctrl_c_stops_a_test_run_even_where_the_test_process_ignores_sigint(
    tmp_path: Path,
) -> None:
    # A test process that ignores SIGINT (as an earlier test may leave it) starts the zygote,
    # whose runs inherited that: Ctrl-C was ignored and the run trained to its end.
    script = f"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from pathlib import Path
from tests.helpers import FAST, interrupted
out = Path({str(tmp_path)!r})
ready = lambda: any(out.glob("scratch/*/*/checkpoints/last.ckpt"))
run = [f"paths.output_root={{out}}", *FAST, "paradigm=scratch", "trainer.max_epochs=30"]
print(interrupted(run, ready, signal.SIGINT).returncode)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "130", done.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path, "scratch")
    assert not (run_dir / "summary.json").exists()


def test_resume_from_a_chosen_checkpoint_continues_from_that_epoch(tmp_path: Path) -> None:
    from paradigms.runner.errors import ConfigError

    linear_stage(tmp_path)
    checkpoints = tmp_path / "checkpoints"
    first = checkpoints / "best-000.ckpt"
    with pytest.raises(ConfigError, match="resume=.*has finished"):
        linear_stage(tmp_path, resume=True, resume_from=first.resolve())
    (tmp_path / "results.json").unlink()  # as if killed after its last epoch
    linear_stage(tmp_path, resume=True, resume_from=first.resolve())
    assert len(list(checkpoints.glob("best-001*.ckpt"))) == 2, "epoch 1 trained again from 0"
    (tmp_path / "results.json").unlink()
    linear_stage(tmp_path, resume=True)  # from last.ckpt: both epochs are done, none trains
    assert len(list(checkpoints.glob("best-001*.ckpt"))) == 2
