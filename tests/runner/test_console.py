"""A quiet console: library log lines and warnings reach the run's log file only (unless
verbose), and the model summary is short and shown once a run."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytorch_lightning.utilities.model_summary import summarize
from torch import nn

from paradigms.models.classifier import ClassificationModule
from paradigms.runner.console import quiet
from paradigms.runner.model_summary import ModelSummary
from paradigms.runner.stages import Stages

SUMMARY = {"_target_": "paradigms.runner.model_summary.ModelSummary", "max_depth": 1}


@pytest.fixture
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, Path]]:
    """Hydra's job logging as conf/ leaves it: a console handler and a file handler on root."""
    monkeypatch.setenv("COLUMNS", "100")  # quiet() sets it when stdout is not a terminal
    root, screen, log = logging.getLogger(), io.StringIO(), tmp_path / "cli.log"
    added = [logging.StreamHandler(screen), logging.FileHandler(log)]
    level = root.level
    root.setLevel(logging.INFO)
    for handler in added:
        root.addHandler(handler)
    lightning = logging.getLogger("pytorch_lightning")  # as Lightning leaves it when it loads
    propagate, own = lightning.propagate, logging.StreamHandler(screen)  # before any handler
    lightning.addHandler(own)
    lightning.propagate = False
    yield screen, log
    lightning.removeHandler(own)
    lightning.propagate = propagate
    logging.captureWarnings(False)
    root.setLevel(level)
    for handler in added:
        root.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("verbose", [False, True])
def test_library_lines_and_warnings_reach_the_log_and_the_console_only_if_verbose(
    handlers: tuple[io.StringIO, Path], verbose: bool
) -> None:
    screen, log = handlers
    quiet(verbose)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").info("GPU available: False")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Found 3 module(s) in eval mode", UserWarning, stacklevel=1)
    logging.getLogger("paradigms").error("an error stays on the console")
    written = log.read_text()
    assert "GPU available" in written and "eval mode" in written
    assert ("GPU available" in screen.getvalue()) is verbose
    assert ("eval mode" in screen.getvalue()) is verbose
    assert "an error stays on the console" in screen.getvalue()


def _module() -> ClassificationModule:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return ClassificationModule(model, 3, {"name": "adam", "lr": 0.1}, {"name": "none"})


def test_the_model_summary_has_no_flops_column_when_flops_were_not_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    counted = summarize(_module(), max_depth=1)
    assert counted.total_flops == 0  # no example_input_array
    ModelSummary.summarize(
        counted._get_summary_data(),
        counted.total_parameters,
        counted.trainable_parameters,
        counted.model_size,
        counted.total_training_modes,
        counted.total_flops,
    )
    printed = capsys.readouterr().out
    assert "Sequential" in printed and "trainable params 15" in printed
    assert "FLOPs" not in printed


def test_the_model_summary_is_a_callback_of_the_first_stage_only(tmp_path: Path) -> None:
    trainer = {"_target_": "pytorch_lightning.Trainer", "max_epochs": 1, "logger": False}
    stages = Stages(trainer, {"rich_model_summary": SUMMARY}, {}, seed=0, run_dir=tmp_path)
    first = stages.trainer_for(tmp_path, "val/acc", "max")
    assert any(isinstance(c, ModelSummary) for c in first.callbacks)
    stages.summarized = True  # as fit_and_test sets it after its fit
    later = stages.trainer_for(tmp_path / "compare" / "scratch", "val/acc", "max")
    assert not any(isinstance(c, ModelSummary) for c in later.callbacks)
    assert stages.title(tmp_path / "compare" / "scratch") == "compare/scratch"
