"""The sweep report: one row per job of a multirun, in the terminal (rich), ``report.csv``,
``report.md`` and ``report.png`` (the optimized metric against each swept value). Jobs that
differ only in ``seed`` also form one row each of ``report_seeds.csv`` (and a second table):
mean, standard deviation and 95% interval per metric, and the per-seed gain over each baseline
the jobs compared with (``paradigms.runner.intervals``); the plot then shows the intervals.

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

from paradigms.runner.intervals import Interval, interval

JOB_FILE = "job.json"
SEED = "seed"
GAIN = "gain_vs_"  # gain_vs_<baseline>/<metric>: the model's metric minus the baseline's, per seed
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
    """The optimized metric of each finished job against each swept value, one panel per key;
    with seeds swept, each configuration's mean over seeds with its 95% interval as error bars
    (seed alone: the jobs, and their mean and interval as a line and a band)."""
    done = [j for j in jobs if isinstance(j["metrics"].get(optimized), (int, float))]
    keys = swept_columns(jobs)
    if not done or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = seed_groups(done)
    others = [k for k in keys if k != SEED]
    if groups and others:  # each configuration as its mean over seeds, with its interval
        keys = others
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        points = (
            [(o.get(key, "-"), interval(j["metrics"][optimized] for j in js)) for o, js in groups]
            if groups and key != SEED
            else [(j["overrides"].get(key, "-"), j["metrics"][optimized]) for j in done]
        )
        numbers = [_number(v) for v, _ in points]
        numeric = None not in numbers
        xs = numbers if numeric else [v for v, _ in points]
        if groups and key != SEED:
            errors = [0.0 if math.isnan(i.half_width) else i.half_width for _, i in points]
            axis.errorbar(xs, [i.mean for _, i in points], yerr=errors, fmt="o", capsize=4)
        else:
            axis.scatter(xs, [y for _, y in points])
            if groups:  # seed alone swept: the mean and its interval across the seeds
                ((_, members),) = groups
                spread = interval(j["metrics"][optimized] for j in members)
                axis.axhline(spread.mean, color="gray", linewidth=1)
                if spread.n > 1:
                    axis.axhspan(spread.low, spread.high, color="gray", alpha=0.2)
        if numeric and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
            axis.set_xscale("log")
        axis.set_xlabel(key)
        axis.set_ylabel(optimized)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def seed_groups(jobs: list[dict[str, Any]]) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
    """The completed jobs grouped by every override but ``seed`` (first-seen order), when
    ``seed`` is swept; else no groups."""
    if SEED not in swept_columns(jobs):
        return []
    groups: dict[tuple, tuple[dict[str, str], list[dict[str, Any]]]] = {}
    for job in jobs:
        if job["status"] != "completed":
            continue
        rest = {k: v for k, v in job["overrides"].items() if k != SEED}
        groups.setdefault(tuple(sorted(rest.items())), (rest, []))[1].append(job)
    return list(groups.values())


def with_gains(metrics: dict[str, float], columns: list[str]) -> dict[str, float]:
    """``metrics`` and, for each ``<baseline>/<metric>`` whose ``<metric>`` the job also
    reports, ``gain_vs_<baseline>/<metric>``: the difference on the job's own seed."""
    gains = {}
    for key in columns:
        baseline, _, metric = key.partition("/")
        if metric in metrics and key in metrics and metric in columns and baseline != "gain":
            gains[f"{GAIN}{baseline}/{metric}"] = metrics[metric] - metrics[key]
    return {**metrics, **gains}


def seed_summary(
    jobs: list[dict[str, Any]], optimized: str
) -> tuple[list[str], list[str], list[tuple[dict[str, str], dict[str, Interval]]]]:
    """The swept keys but seed, the summarised metrics (gains included) and, per group of
    seeds, its overrides and each metric's interval."""
    groups = seed_groups(jobs)
    columns = metric_columns(jobs, optimized)
    gained = [with_gains(j["metrics"], columns) for j in jobs]
    metrics = list(dict.fromkeys([*columns, *(k for m in gained for k in m if k.startswith(GAIN))]))
    keys = [k for k in swept_columns(jobs) if k != SEED]
    rows = []
    for overrides, members in groups:
        values = [with_gains(j["metrics"], columns) for j in members]
        rows.append((overrides, {m: interval(v.get(m, math.nan) for v in values) for m in metrics}))
    return keys, metrics, rows


def write_seed_report(
    sweep_dir: Path, jobs: list[dict[str, Any]], optimized: str, console: Console
) -> list[Path]:
    """``report_seeds.csv`` (mean, std, low, high per metric) and its table, when the sweep
    repeats configurations over seeds."""
    keys, metrics, rows = seed_summary(jobs, optimized)
    if not rows:
        return []
    fields = ("mean", "std", "low", "high")
    header = [*keys, "seeds", *(f"{m} {f}" for m in metrics for f in fields)]
    lines = [
        [
            *(o.get(k, "-") for k in keys),
            str(max(i.n for i in stats.values())),
            *(_cell(getattr(stats[m], f)) for m in metrics for f in fields),
        ]
        for o, stats in rows
    ]
    path = sweep_dir / "report_seeds.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *lines])
    table = Table(title="over seeds: mean ± 95% interval (t)", title_justify="left")
    for column in [*keys, "seeds", *metrics]:
        table.add_column(_short(column, keys) if column in keys else column, justify="right")
    for overrides, stats in rows:
        count = str(max(i.n for i in stats.values()))
        table.add_row(
            *(overrides.get(k, "-") for k in keys), count, *(str(stats[m]) for m in metrics)
        )
    console.print(table)
    return [path]


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
    written += write_seed_report(sweep_dir, jobs, optimized, console)
    plot = plot_metric(jobs, optimized, sweep_dir / "report.png")
    written += [plot] if plot else []
    failed = sum(row[status] != "completed" for row in rows)
    console.print(f"  {len(rows)} jobs, {failed} not completed; report in [cyan]{sweep_dir}[/]")
    return written
