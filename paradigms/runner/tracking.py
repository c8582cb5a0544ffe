"""Experiment trackers (the ``logger`` config group): build them per stage, continue their
runs on resume, and log the run's summary and files to them at the end.

Each training stage of a run (the model, each ``compare/<baseline>``, a source stage) is one
tracker run, named ``<run dir name>[/<stage>]`` and tagged with the run directory. The run id
a tracker gives is stored in ``<stage dir>/trackers.json``; resuming a run reads it back, so
the tracker continues the same run instead of starting a new one. Hyper-parameters are the
resolved config flattened to dotted keys, the same keys a command-line override uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from paradigms.runner.tensorboard_logger import SUBDIR, StageTensorBoardLogger

TRACKERS = "trackers.json"

# The trackers that keep runs: the argument that continues a run, and the one that names it.
RUN_ARGUMENTS = {
    "MLFlowLogger": ("run_id", "run_name"),
    "WandbLogger": ("id", "name"),
}

# File loggers (metrics.csv, each stage's event file) already hold what the summary step would
# add (every model's test metrics); summary.json has it.
SKIPPED_AT_SUMMARY = ("CSVLogger", "TensorBoardLogger")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _kind(spec: Mapping[str, Any]) -> str:
    return spec["_target_"].rsplit(".", 1)[-1]


def _run_arguments(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    kind = _kind(spec)
    return next((args for name, args in RUN_ARGUMENTS.items() if kind.endswith(name)), None)


def _stage_name(stage_dir: Path, run_dir: Path) -> str:
    try:
        relative = stage_dir.resolve().relative_to(run_dir.resolve())
    except ValueError:
        return f"{run_dir.name}/{stage_dir.name}"
    return f"{run_dir.name}/{relative}" if relative.parts else run_dir.name


def stored_runs(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """The tracker runs recorded for a stage: ``{logger key: {"run_id", "kind", "where"}}``."""
    path = stage_dir / TRACKERS
    return json.loads(path.read_text()) if path.is_file() else {}


def _where(logger: Logger, spec: Mapping[str, Any]) -> str:
    """Where to look at a run: the tracking URI, or the folder the logger writes."""
    return str(spec.get("tracking_uri") or getattr(logger, "log_dir", None) or logger.save_dir)


def build_loggers(
    specs: Mapping[str, Any],
    stage_dir: Path,
    run_dir: Path | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> list[Logger]:
    """The configured loggers writing under ``stage_dir``, continuing the stage's stored runs.

    A new tracker run gets ``hparams`` when given (a run continued keeps the ones it has:
    trackers refuse to change a logged parameter) and its id is stored for a resume.
    """
    run_dir = run_dir or stage_dir
    stored = stored_runs(stage_dir)
    loggers, records, fresh = [], {}, []
    for key, spec in specs.items():
        if not spec:
            continue
        arguments = {"save_dir": str(stage_dir)}
        run_arguments = _run_arguments(spec)
        if run_arguments:
            id_argument, name_argument = run_arguments
            arguments[name_argument] = spec.get(name_argument) or _stage_name(stage_dir, run_dir)
            if key in stored:
                arguments[id_argument] = stored[key]["run_id"]
        logger = instantiate(spec, **arguments)
        loggers.append(logger)
        if key not in stored:
            fresh.append(logger)
        if run_arguments and rank_zero_only.rank == 0:
            records[key] = {
                "kind": _kind(spec),
                "run_id": logger.version if key in stored else _start(logger),
                "where": _where(logger, spec),
            }
    if rank_zero_only.rank == 0 and records:
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / TRACKERS).write_text(
            json.dumps({**stored, **records}, indent=2, sort_keys=True)
        )
    if rank_zero_only.rank == 0 and hparams is not None:
        for logger in fresh:
            logger.log_hyperparams({**flatten(hparams), "stage": _stage_name(stage_dir, run_dir)})
    return loggers


def _start(logger: Logger) -> str:
    """Starts the tracker run now (trackers start lazily) and returns its id."""
    _ = logger.experiment
    return str(logger.version)


@rank_zero_only
def log_summary(
    specs: Mapping[str, Any],
    run_dir: Path,
    metrics: Mapping[str, float],
    files: list[Path],
) -> list[str]:
    """Logs ``summary/<metric>`` (every model of the run) to the run's trackers, attaches
    ``files`` (summary.json, plots) where the tracker keeps artifacts, and returns one line per
    tracker saying where its run is."""
    trackers = {k: s for k, s in specs.items() if s and not _kind(s).endswith(SKIPPED_AT_SUMMARY)}
    lines = []
    loggers = build_loggers(trackers, run_dir, run_dir)
    for logger, (key, spec) in zip(loggers, trackers.items(), strict=True):
        logger.log_metrics({f"summary/{k}": float(v) for k, v in metrics.items()})
        _attach(logger, files)
        logger.finalize("success")
        run = stored_runs(run_dir).get(key)
        where = run["where"] if run else _where(logger, spec)
        lines.append(f"{key}: {where}" + (f" (run {run['run_id']})" if run else ""))
    close(loggers)
    event_files = [k for k, s in specs.items() if s and _kind(s).endswith("TensorBoardLogger")]
    return lines + [f"{key}: {run_dir / SUBDIR}" for key in event_files]


def _attach(logger: Logger, files: list[Path]) -> None:
    """Files as artifacts: MLflow's artifact store, W&B's run files; others keep none."""
    kind = type(logger).__name__
    for path in files:
        if not path.is_file():
            continue
        if kind == "MLFlowLogger":
            logger.experiment.log_artifact(logger.run_id, str(path))
        elif kind == "WandbLogger":
            logger.experiment.save(str(path), base_path=str(path.parent), policy="now")


def close(loggers: list[Logger]) -> None:
    """Ends the trackers' sessions in this process once a stage is done: W&B keeps one run
    open until told, and the next stage's logger would silently reuse it; TensorBoard's
    writer of the stage is closed."""
    for logger in loggers:
        finish = getattr(getattr(logger, "_experiment", None), "finish", None)
        if callable(finish):
            finish()
        if isinstance(logger, StageTensorBoardLogger):
            logger.end_stage()
