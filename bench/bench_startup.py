"""Claim: the CLI answers at once: --help, --cfg job and a validation error in under 2 s
(no torch import), and the time to the first training step is measured. Also what a finished
run saves by leaving through ``exit_without_teardown``: a process that imports torch,
Lightning and timm, exiting as Python does and through it, alternated.

``--against <checkout>`` runs each command alternately here and in another checkout (e.g. the
lead's main) and adds the ratio, this tree's median over the other's.

    python bench/bench_startup.py [--repeats 3] [--against /path/to/other/checkout] [--answers-only]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, median_time, write_result
from rich.console import Console
from rich.table import Table

COMMANDS = {
    "--help": ["--help"],
    "--cfg job": ["--cfg", "job"],
    "validation error (lr=-1)": ["paradigm.optimizer.lr=-1"],
    "unknown backbone": ["backbone.name=resnet_18"],
    "unknown option (backbone=resnet_18)": ["backbone=resnet_18"],
}
MARKER = "trainable params"  # printed by the model summary right before the first step


def wall(args: list[str], root: Path = ROOT) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "cli.py", *args], cwd=root, capture_output=True, check=False)
    return time.perf_counter() - started


def first_step(output_root: str) -> float:
    """Seconds from launching ``python cli.py paradigm=scratch`` to its first training step."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "cli.py",
            "paradigm=scratch",
            "backbone=test_resnet",
            "trainer.max_epochs=1",
            "callbacks.rich_progress_bar=null",
            f"paths.output_root={output_root}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if MARKER in line:
            elapsed = time.perf_counter() - started
            process.kill()
            process.wait()
            return elapsed
    raise RuntimeError("the run ended before its first step")


IMPORTS = "import torch, pytorch_lightning, timm"
EXITS = {  # how the process that imported IMPORTS leaves
    "(imports, then Python's exit)": "",
    "(imports, then exit_without_teardown)": "; from paradigms.runner.process_exit import "
    "exit_without_teardown; exit_without_teardown(0)",
}


def exit_times(repeats: int) -> dict[str, float]:
    """Median whole-process seconds of each way out of EXITS, alternated."""
    times: dict[str, list[float]] = {name: [] for name in EXITS}
    for _ in range(repeats):
        for name, tail in EXITS.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", IMPORTS + tail], cwd=ROOT, check=True)
            times[name].append(time.perf_counter() - started)
    return {name: median_time(seconds) for name, seconds in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--answers-only", action="store_true", help="skip the training start")
    args = parser.parse_args()
    results, reference = {}, {}
    for name, cmd in COMMANDS.items():
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternating, so both see the same load
            ours.append(wall(cmd))
            if args.against:
                theirs.append(wall(cmd, args.against))
        results[name] = median_time(ours)
        if theirs:
            reference[name] = median_time(theirs)
    if not args.answers_only:
        with tempfile.TemporaryDirectory() as output_root:
            results["first training step"] = median_time(
                [first_step(output_root) for _ in range(args.repeats)]
            )
        results.update(exit_times(args.repeats))
    table = Table(title="CLI start-up (median wall time)")
    for column in ("command", "seconds", *(("reference", "ratio") if reference else ())):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, seconds in results.items():
        extra = (
            (f"{reference[name]:.2f}", f"{seconds / reference[name]:.2f}")
            if name in reference
            else ("", "")
        )
        table.add_row(name, f"{seconds:.2f}", *(extra if reference else ()))
    Console().print(table)
    ratios = {name: results[name] / reference[name] for name in reference}
    write_result(
        "startup",
        {
            **results,
            **(
                {"against": str(args.against), "reference": reference, "ratio": ratios}
                if reference
                else {}
            ),
        },
    )


if __name__ == "__main__":
    main()
