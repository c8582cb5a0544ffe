"""The pictures a researcher looks at, written as PNGs into the run directory.

Every function draws one figure with matplotlib's object API (``Figure``, the Agg canvas: no
display, no global pyplot state) and returns the file written, or ``None`` with a warning when
the figure cannot be made: a plot never stops a run.

``plot_run`` is the one call at the end of a run; it reads what the stages left on disk, so a
paradigm gets plots by writing the usual files (no code of its own needed):

- ``<stage>/metrics.csv`` -> ``<stage>/learning_curves.png`` (train/val per ``epoch``, or per
  ``round`` when that column exists) and, when it has per-task columns (``val/<task>/<metric>``,
  ``weight/<task>``), ``<stage>/task_metrics.png``;
- ``<stage>/confusion_matrix.json`` -> ``<stage>/confusion_matrix.png`` (normalized by true
  class) and ``<stage>/per_class_accuracy.png``;
- the result's rows (model vs baselines) -> ``comparison.png`` in the run directory.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from paradigms.contract import Row
from paradigms.runner.stages import CONFUSION

METRICS = "metrics.csv"

# Folders of a run that hold no stage (logger and checkpoint files).
NOT_STAGES = {"checkpoints", "tensorboard", "wandb", ".hydra"}
TASK_METRIC = r"^val/(?P<task>[^/]+)/(?P<metric>acc|loss)$"
TASK_WEIGHT = r"^(?:task_)?weights?/(?P<task>[^/]+)$"


def safe(plot: Callable[..., Path]) -> Callable[..., Path | None]:
    """Turns a failing plot into a warning and ``None``."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Path | None:
        try:
            return plot(*args, **kwargs)
        except Exception as error:  # a picture is never worth a crashed run
            warnings.warn(f"plot {plot.__name__} not made: {error!r}", stacklevel=2)
            return None

    return wrapper


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv as one row per epoch (or round): the last value each column got in it."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    x = "round" if rows and "round" in rows[0] else "epoch"
    merged: dict[float, dict[str, float]] = {}
    for row in rows:
        if not row.get(x):
            continue
        entry = merged.setdefault(float(row[x]), {x: float(row[x])})
        entry.update({k: float(v) for k, v in row.items() if v not in ("", None) and k != x})
    return [merged[key] for key in sorted(merged)]


def _x(rows: Sequence[Mapping[str, float]]) -> str:
    return "round" if rows and "round" in rows[0] else "epoch"


def _series(rows: Sequence[Mapping[str, float]], column: str) -> tuple[list[float], list[float]]:
    x = _x(rows)
    points = [(row[x], row[column]) for row in rows if column in row]
    return [p[0] for p in points], [p[1] for p in points]


@safe
def curves(rows: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Train and val curves, one panel per metric (loss, acc, ...), per epoch or round."""
    columns = sorted({k for row in rows for k in row})
    panels: dict[str, list[str]] = {}
    for column in columns:
        match = re.match(r"^(train|val)/([^/]+?)(_epoch)?$", column)
        if match and not match.group(2).endswith("_step"):
            panels.setdefault(match.group(2), []).append(column)
    if not panels:
        raise ValueError("no train/ or val/ columns")
    names = sorted(panels, key=lambda n: (n != "loss", n))
    figure = Figure(figsize=(4.5 * len(names), 3.5))
    for index, name in enumerate(names, 1):
        axes = figure.add_subplot(1, len(names), index)
        for column in sorted(panels[name]):
            xs, ys = _series(rows, column)
            axes.plot(xs, ys, marker="o", markersize=3, label=column.removesuffix("_epoch"))
        axes.set(xlabel=_x(rows), ylabel=name, title=name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return _save(figure, path)


@safe
def learning_curves(metrics_csv: Path, path: Path, title: str = "") -> Path:
    """``curves`` of a Lightning metrics.csv."""
    return curves(read_metrics(metrics_csv), path, title)


@safe
def confusion_matrix(
    matrix: Sequence[Sequence[float]],
    path: Path,
    classes: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """The test confusion matrix normalized by true class (each row sums to 1)."""
    counts = np.asarray(matrix, dtype=float)
    normalized = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = list(classes or range(len(counts)))
    size = max(4.0, 0.45 * len(labels) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.add_subplot()
    image = axes.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    if len(labels) <= 20:
        for (i, j), value in np.ndenumerate(normalized):
            color = "white" if value > 0.5 else "black"
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    axes.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=f"test confusion matrix, normalized: {title}".rstrip(": "),
    )
    return _save(figure, path)


@safe
def per_class_accuracy(
    matrix: Sequence[Sequence[float]],
    path: Path,
    classes: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Test accuracy of each true class (the confusion matrix's recall), overall as a line."""
    counts = np.asarray(matrix, dtype=float)
    accuracy = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    labels = [str(c) for c in (classes or range(len(counts)))]
    figure = Figure(figsize=(max(4.0, 0.4 * len(labels) + 2), 3.5))
    axes = figure.add_subplot()
    axes.bar(range(len(labels)), accuracy, color="tab:blue", tick_label=labels)
    overall = np.trace(counts) / max(counts.sum(), 1)
    axes.axhline(overall, color="tab:red", linestyle="--", label=f"overall {overall:.3f}")
    axes.set(
        ylim=(0, 1.05),
        xlabel="class",
        ylabel="accuracy",
        title=f"test accuracy per class: {title}".rstrip(": "),
    )
    axes.legend(loc="lower right")
    return _save(figure, path)


@safe
def comparison_bars(rows: Sequence[Row], path: Path, metric: str = "test/acc") -> Path:
    """One bar per model of the run (e.g. finetune vs scratch vs source) on ``metric``."""
    shown = [row for row in rows if metric in row.metrics]
    if len(shown) < 2:
        raise ValueError(f"fewer than two models report {metric}")
    values = [row.metrics[metric] for row in shown]
    figure = Figure(figsize=(max(4.0, 1.4 * len(shown) + 1), 3.5))
    axes = figure.add_subplot()
    bars = axes.bar([row.name for row in shown], values, color=_colors(len(shown)))
    axes.bar_label(bars, fmt="%.3f")
    top = max(values)
    axes.set(ylabel=metric, title=f"{metric} by model", ylim=(0, top * 1.15 if top > 0 else 1))
    axes.tick_params(axis="x", labelrotation=15)
    return _save(figure, path)


def _colors(count: int) -> list[str]:
    return [f"C{i % 10}" for i in range(count)]


@safe
def task_curves(
    rows: Sequence[Mapping[str, float]],
    path: Path,
    metric_pattern: str = TASK_METRIC,
    weight_pattern: str = TASK_WEIGHT,
) -> Path:
    """Multi-task: each task's validation metrics and the loss weights over time."""
    columns = sorted({k for row in rows for k in row})
    metric_columns = [c for c in columns if re.match(metric_pattern, c)]
    weight_columns = [c for c in columns if re.match(weight_pattern, c)]
    if not metric_columns and not weight_columns:
        raise ValueError("no per-task columns")
    groups = [("per-task metrics", metric_columns), ("task weights", weight_columns)]
    groups = [(name, cols) for name, cols in groups if cols]
    figure = Figure(figsize=(5 * len(groups), 3.5))
    for index, (name, cols) in enumerate(groups, 1):
        axes = figure.add_subplot(1, len(groups), index)
        for column in cols:
            xs, ys = _series(rows, column)
            axes.plot(xs, ys, marker="o", markersize=3, label=column)
        axes.set(xlabel=_x(rows), title=name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return _save(figure, path)


def has_task_columns(rows: Sequence[Mapping[str, float]]) -> bool:
    """Whether metrics.csv rows hold multi-task columns (``task_curves`` has something to draw)."""
    columns = {k for row in rows for k in row}
    return any(re.match(TASK_METRIC, c) or re.match(TASK_WEIGHT, c) for c in columns)


@safe
def client_label_distribution(
    counts: Sequence[Sequence[float]], path: Path, classes: Sequence[str] | None = None
) -> Path:
    """Federated: how many examples of each class every client holds (stacked bars; the
    federated paradigm draws its partition with it)."""
    table = np.asarray(counts, dtype=float)
    labels = [str(c) for c in (classes or range(table.shape[1]))]
    figure = Figure(figsize=(max(4.0, 0.35 * len(table) + 2.5), 3.8))
    axes = figure.add_subplot()
    bottom = np.zeros(len(table))
    clients = range(len(table))
    for column, label in enumerate(labels):
        axes.bar(clients, table[:, column], bottom=bottom, label=label, color=f"C{column % 10}")
        bottom += table[:, column]
    axes.set_xticks(clients)
    axes.set(xlabel="client", ylabel="examples", title="label distribution per client")
    axes.legend(title="class", fontsize=7, ncols=math.ceil(len(labels) / 10), loc="upper right")
    return _save(figure, path)


def _stage_dirs(run_dir: Path) -> list[Path]:
    found = {run_dir}
    for name in (METRICS, CONFUSION):
        for file in run_dir.rglob(name):
            if not NOT_STAGES & set(file.relative_to(run_dir).parts):
                found.add(file.parent)
    return sorted(found)


def plot_stage(stage_dir: Path, title: str = "") -> list[Path]:
    """The plots of one stage directory, from the files it holds."""
    made: list[Path | None] = []
    if (stage_dir / METRICS).is_file():
        rows = safe(read_metrics)(stage_dir / METRICS) or []
        if any(re.match(r"^(train|val)/", k) for row in rows for k in row):  # not test-only
            made.append(curves(rows, stage_dir / "learning_curves.png", title))
        if has_task_columns(rows):
            made.append(task_curves(rows, stage_dir / "task_metrics.png"))
    if (stage_dir / CONFUSION).is_file():
        matrix = json.loads((stage_dir / CONFUSION).read_text())
        made.append(confusion_matrix(matrix, stage_dir / "confusion_matrix.png", title=title))
        made.append(per_class_accuracy(matrix, stage_dir / "per_class_accuracy.png", title=title))
    return [path for path in made if path is not None]


def plot_run(run_dir: Path, rows: Sequence[Row]) -> list[Path]:
    """Every plot of a finished run: each stage's, and the models compared. Never raises."""
    made: list[Path] = []
    try:
        for stage_dir in _stage_dirs(run_dir):
            relative = stage_dir.relative_to(run_dir)
            made += plot_stage(stage_dir, str(relative) if relative.parts else run_dir.name)
        if len(rows) > 1:
            made += [p for p in [comparison_bars(rows, run_dir / "comparison.png")] if p]
    except Exception as error:
        warnings.warn(f"plots not made: {error!r}", stacklevel=2)
    return made


def describe(made: Sequence[Path], run_dir: Path) -> list[str]:
    """The summary's line naming the plots written (none when there are none)."""
    names = [str(path.relative_to(run_dir)) for path in made]
    return [f"plots: {', '.join(names)}"] if names else []
