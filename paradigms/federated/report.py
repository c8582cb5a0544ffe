"""What a federated run shows and leaves behind: the partition table, a line per round,
the loggers a round's numbers go to (``metrics.csv`` among them) and the PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from paradigms.runner.csv_logger import ResumableCSVLogger  # noqa: E402
from paradigms.runner.tracking import build_loggers, close  # noqa: E402


def label_counts(labels: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """[clients, classes] sample counts."""
    return torch.stack([torch.bincount(y, minlength=num_classes) for y in labels])


def print_partition(counts: torch.Tensor, title: str, console: Console) -> None:
    """Samples and classes per client, with the per-class counts."""
    table = Table(title=title, title_justify="left")
    for column in ("client", "samples", "classes", "per class"):
        table.add_column(column, justify="left" if column == "per class" else "right")
    for client, row in enumerate(counts.tolist()):
        per_class = " ".join(f"{n:3d}" for n in row)
        table.add_row(str(client), str(sum(row)), str(sum(n > 0 for n in row)), per_class)
    console.print(table)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> None:
    """Global validation accuracy (and the clients' mean/worst holdout accuracy) per round."""
    fig, ax = plt.subplots(figsize=(6, 4))
    rounds = [int(r["round"]) for r in rows]
    for key, label in (
        ("val/acc", "global (validation)"),
        ("fed/mean_acc", "clients mean"),
        ("fed/worst_acc", "worst client"),
    ):
        values = [float(r[key]) for r in rows if key in r]
        if values:
            ax.plot(rounds[: len(values)], values, marker=".", label=label)
    ax.set(xlabel="round", ylabel="accuracy", ylim=(0, 1), title="accuracy per round")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class RoundLoggers:
    """The run's loggers (``logger`` config group: csv, tensorboard, mlflow, wandb), one step
    per round, in the run directory's tracker run; on resume the trackers continue their runs
    (``trackers.json``) and ``metrics.csv`` drops the rows of rounds past the checkpoint (they
    will be run again)."""

    def __init__(self, specs: dict[str, Any], run_dir: Path, hparams: Any, last_round: int) -> None:
        self.loggers = build_loggers(specs, run_dir, run_dir, hparams)
        for logger in self.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.drop_rows_after(last_round + 1)

    def log(self, metrics: dict[str, Any]) -> None:
        """One round's numbers, written through at once (a kill loses no finished round)."""
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for logger in self.loggers:
            logger.log_metrics(values, step=int(metrics["round"]))
            logger.save()

    def finish(self) -> None:
        for logger in self.loggers:
            logger.finalize("success")
        close(self.loggers)


class RoundDisplay:
    """A rich progress bar over rounds and one line per round with its numbers."""

    def __init__(self, rounds: int, start: int, console: Console, progress: bool) -> None:
        self.console = console
        self.progress = (
            Progress(
                TextColumn("[bold]federated rounds"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                transient=True,
            )
            if progress
            else None
        )
        self.task = (
            self.progress.add_task("rounds", total=rounds, completed=start, status="")
            if self.progress
            else None
        )

    def __enter__(self) -> RoundDisplay:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def update(self, m: dict[str, Any]) -> None:
        line = (
            f"round {m['round']:>3}  val acc {m['val/acc']:.4f}  loss {m['val/loss']:.4f}  "
            f"client {m['train/client_loss']:.4f}  clients {m['clients/returned']}"
            f"/{m['clients/sampled']}"
            + (f" (rejected {m['clients/rejected']})" if m["clients/rejected"] else "")
            + f"  down {_megabytes(m['bytes/down'])} up {_megabytes(m['bytes/up'])}"
            + f"  {m['time/round_s']:.2f}s"
            + ("  skipped: too few clients returned" if m["round/skipped"] else "")
        )
        if "clients/malicious" in m:
            line += f"  malicious {m['clients/malicious']}"
        if "privacy/epsilon" in m:
            line += f"  eps {m['privacy/epsilon']:.3f} clip {m['privacy/clip']:.3g}"
        if "fed/mean_acc" in m:
            line += f"  clients mean {m['fed/mean_acc']:.3f} worst {m['fed/worst_acc']:.3f}"
        self.console.print(line, highlight=False, soft_wrap=True)
        if self.progress:
            self.progress.update(
                self.task, completed=m["round"], status=f"val acc {m['val/acc']:.4f}"
            )


def _megabytes(n: float) -> str:
    return f"{n / 2**20:.1f}MiB" if math.isfinite(n) else "-"
