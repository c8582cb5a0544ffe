"""The sweep report: one row per job of a multirun, in the terminal (rich), ``report.csv``,
``report.md`` and ``report.png`` (the optimized metric against each swept value).

Everything is read back from the job directories (``.hydra/overrides.yaml``, ``job.json``,
``summary.json``), so the report is the same whichever launcher ran the jobs, and a sweep
restarted into the same directory (Optuna) reports all its trials. A job directory without
``job.json`` was killed while it ran and is shown as ``interrupted``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

JOB_FILE = "job.json"
SUMMARY = (
    "summary.json"  # paradigms.runner.summary.SUMMARY, named here to keep torch out of the report
)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p.parent for p in sweep_dir.glob("*/.hydra")]
    return sorted(
        dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One dict per job directory: ``job``, ``overrides`` (key -> value), ``status``,
    ``metrics``, ``wall_time_s``, ``error``."""
    jobs = []
    for job_dir in _job_dirs(sweep_dir):
        record = _read_json(job_dir / JOB_FILE)
        summary = _read_json(job_dir / SUMMARY)
        saved = job_dir / ".hydra" / "overrides.yaml"  # missing when killed while starting
        overrides = [str(o) for o in OmegaConf.load(saved)] if saved.is_file() else []
        jobs.append(
            {
                "job": job_dir.name,
                "overrides": dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o),
                "status": record.get("status", "interrupted"),
                "metrics": summary.get("metrics", {}),
                "wall_time_s": record.get("wall_time_s"),
                "error": record.get("error"),
            }
        )
    return jobs


def swept_columns(jobs: list[dict[str, Any]]) -> list[str]:
    """The override keys whose value differs between jobs."""
    keys = list(dict.fromkeys(k for job in jobs for k in job["overrides"]))
    return [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]


def fixed_overrides(jobs: list[dict[str, Any]]) -> str:
    """The overrides every job shares, as one command-line string."""
    swept = set(swept_columns(jobs))
    first = jobs[0]["overrides"] if jobs else {}
    return " ".join(f"{k}={v}" for k, v in first.items() if k not in swept)


def _short(key: str, keys: list[str]) -> str:
    """The shortest dotted suffix of ``key`` that no other key ends with."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        suffix = ".".join(parts[-n:])
        if not any(k != key and (k == suffix or k.endswith("." + suffix)) for k in keys):
            return suffix
    return key


def metric_columns(jobs: list[dict[str, Any]], optimized: str) -> list[str]:
    """The optimized metric first, then every reported ``.../test/acc``."""
    accs = sorted({k for job in jobs for k in job["metrics"] if k.endswith("test/acc")})
    return [optimized, *(k for k in accs if k != optimized)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "-" if value is None else str(value)


def report_rows(jobs: list[dict[str, Any]], optimized: str) -> tuple[list[str], list[list[str]]]:
    """The report's header and rows, as strings."""
    swept, metrics = swept_columns(jobs), metric_columns(jobs, optimized)
    header = ["job", *swept, *metrics, "wall_time_s", "status", "error"]
    rows = [
        [
            job["job"],
            *(job["overrides"].get(k, "-") for k in swept),
            *(_cell(job["metrics"].get(k)) for k in metrics),
            "-" if job["wall_time_s"] is None else f"{job['wall_time_s']:.1f}",
            job["status"],
            job["error"] or "",
        ]
        for job in jobs
    ]
    return header, rows


def _markdown(header: list[str], rows: list[list[str]], fixed: str) -> str:
    lines = [f"Overrides of every job: `{fixed}`", ""] if fixed else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _compact(value: str) -> str:
    """A long number in four significant digits (the CSV keeps every digit)."""
    number = _number(value)
    return f"{number:.4g}" if number is not None and len(value) > 8 else value


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def plot_metric(jobs: list[dict[str, Any]], optimized: str, path: Path) -> Path | None:
    """The optimized metric of each finished job against each swept value, one panel per key."""
    done = [j for j in jobs if isinstance(j["metrics"].get(optimized), (int, float))]
    keys = swept_columns(jobs)
    if not done or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        values = [j["overrides"].get(key, "-") for j in done]
        numbers = [_number(v) for v in values]
        numeric = None not in numbers
        xs = numbers if numeric else values
        axis.scatter(xs, [j["metrics"][optimized] for j in done])
        if numeric and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
            axis.set_xscale("log")
        axis.set_xlabel(key)
        axis.set_ylabel(optimized)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(sweep_dir: Path, optimized: str, console: Console | None = None) -> list[Path]:
    """Writes report.csv, report.md and report.png in ``sweep_dir`` and prints the table."""
    jobs = collect_jobs(sweep_dir)
    header, rows = report_rows(jobs, optimized)
    fixed = fixed_overrides(jobs)
    with (sweep_dir / "report.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    (sweep_dir / "report.md").write_text(_markdown(header, rows, fixed))
    swept = swept_columns(jobs)
    table = Table(title=f"sweep: {optimized} per job", title_justify="left")
    for column in header:
        name = (
            _short(column, swept) if column in swept else column.replace("wall_time_s", "time (s)")
        )
        table.add_column(name, justify="left" if column in ("status", "error") else "right")
    status = header.index("status")
    for row in rows:
        cells = [
            _compact(cell) if column in swept else cell
            for column, cell in zip(header, row, strict=True)
        ]
        table.add_row(*cells, style=None if row[status] == "completed" else "red")
    console = console or Console()
    console.print(table)
    if fixed:
        console.print(f"  every job: {fixed}")
    written = [sweep_dir / "report.csv", sweep_dir / "report.md"]
    plot = plot_metric(jobs, optimized, sweep_dir / "report.png")
    written += [plot] if plot else []
    failed = sum(row[status] != "completed" for row in rows)
    console.print(f"  {len(rows)} jobs, {failed} not completed; report in [cyan]{sweep_dir}[/]")
    return written
