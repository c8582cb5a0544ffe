"""Does distillation help a small student? KD student vs the student alone vs the teacher.

On digits the teacher (resnet10t by default) learns from every training label; the student
(test_resnet) and its student-alone baseline have ten labels per class. Each seed is one
``python cli.py paradigm=distill`` run (its teacher trained by the cached source stage).
Prints mean and std over seeds of test accuracy, agreement with the teacher, parameter
counts and inference time, and appends a JSON line to bench/results/distill.jsonl.

    python bench/bench_distill.py                      # 3 seeds, full settings
    python bench/bench_distill.py --seeds 0 --epochs 2 --teacher-epochs 2   # a quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"teacher": "teacher/", "student + KD": "", "student alone": "scratch/"}


def run_seed(args: argparse.Namespace, seed: int, output_root: Path) -> dict:
    """One distillation run; returns its summary.json."""
    command = [
        sys.executable,
        "cli.py",
        "paradigm=distill",
        f"backbone={args.student}",
        f"paradigm.teacher.name={args.teacher}",
        f"paradigm.teacher_source.max_epochs={args.teacher_epochs}",
        f"trainer.max_epochs={args.epochs}",
        f"data.train_per_class={args.train_per_class}",
        f"seed={seed}",
        f"paths.output_root={output_root}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    run_dir = sorted((output_root / "distill").glob("*/*"))[-1]
    return json.loads((run_dir / "summary.json").read_text())


def aggregate(summaries: list[dict]) -> dict[str, dict[str, float]]:
    """Per model: mean and std over seeds of accuracy, agreement and ms/image; its params."""
    table = {}
    for model, prefix in MODELS.items():
        row = {}
        for metric in ("acc", "agreement", "ms_per_image"):
            values = [s["metrics"].get(f"{prefix}test/{metric}") for s in summaries]
            if None in values:
                continue
            row[metric] = statistics.mean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        params = {r["name"]: r["total_params"] for r in summaries[0]["rows"]}
        row["params"] = params[model]
        table[model] = row
    return table


def show(table: dict[str, dict[str, float]], title: str) -> None:
    out = Table(title=title, title_justify="left")
    for column in ("model", "test acc", "agreement", "params", "ms / image"):
        out.add_column(column, justify="left" if column == "model" else "right")
    for model, row in table.items():
        agreement = f"{row['agreement']:.4f}" if "agreement" in row else "-"
        out.add_row(
            model,
            f"{row['acc']:.4f} ± {row['acc_std']:.4f}",
            agreement,
            f"{row['params']:,}",
            f"{row['ms_per_image']:.3f}",
        )
    Console().print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher", default="resnet10t")
    parser.add_argument("--student", default="test_resnet")
    parser.add_argument("--epochs", type=int, default=30, help="student training epochs")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--train-per-class", type=int, default=10, help="the student's labels")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summaries = [run_seed(args, seed, Path(tmp)) for seed in args.seeds]
    table = aggregate(summaries)
    title = (
        f"distillation on digits: {args.student} student ({args.train_per_class}/class) "
        f"from a {args.teacher} teacher, seeds {args.seeds}"
    )
    show(table, title)
    record = {
        "claim": "distill",
        **vars(args),
        "models": table,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_result("distill", record)


if __name__ == "__main__":
    main()
