"""The end of a run: ``summary.json`` in the run directory and a rich table in the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paradigms.contract import Result

SUMMARY = "summary.json"


def write_summary(result: Result, run_dir: Path, extra: dict[str, Any]) -> Path:
    """Writes the metrics, the table's rows and ``extra`` (paradigm, metric, wall time...)."""
    payload = {
        **extra,
        "run_dir": str(run_dir),
        "metrics": result.metrics,
        "rows": [vars(row) for row in result.rows],
        "notes": result.notes,
    }
    path = run_dir / SUMMARY
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


# The one validation value per model the table shows (summary.json keeps them all): what
# selected its checkpoint, beside the test metrics it is reported on.
SELECTION_COLUMNS = ("val/acc", "val/score")


def _columns(result: Result) -> list[str]:
    keys = {k for row in result.rows for k in row.metrics}
    selection = [k for k in SELECTION_COLUMNS if k in keys]
    tests = sorted(
        (k for k in keys if k.startswith("test/")), key=lambda k: (not k.endswith("/acc"), k)
    )
    return selection + tests


def print_summary(
    result: Result,
    title: str,
    run_dir: Path,
    console: Console | None = None,
    footer: list[str] | None = None,
) -> None:
    """One row per model of the run, its selection value (``val/acc`` or ``val/score``), test
    metrics and parameter counts; then the run
    directory and the ``footer`` lines (plots, tracker runs)."""
    table = Table(title=title, title_justify="left")
    table.add_column("model", style="bold")
    columns = _columns(result)
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("trainable params", justify="right")
    table.add_column("total params", justify="right")
    for row in result.rows:
        cells = [f"{row.metrics[c]:.4f}" if c in row.metrics else "-" for c in columns]
        counts = [
            f"{n:,}" if n is not None else "-" for n in (row.trainable_params, row.total_params)
        ]
        table.add_row(row.name, *cells, *counts)
    console = console or Console()
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}")
    console.print(f"  run directory: [cyan]{run_dir}[/]")
    for line in footer or []:
        console.print(f"  {line}", highlight=False)
