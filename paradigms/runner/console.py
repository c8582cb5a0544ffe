"""What a run prints: stage headers, progress bars, the summary table and paths.

Everything else a run's libraries say (Lightning's INFO lines and tips, warnings a user cannot
act on) goes to the run's ``cli.log`` only, Hydra's job log file; ``verbose=true`` prints it
too. When stdout is not a terminal (a log file, a pipe) rich's consoles are made wide, so no
table header or progress line wraps at rich's default 80 columns.
"""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console

LOG_WIDTH = 240  # columns of rich's consoles when stdout is not a terminal
LIBRARY_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


def quiet(verbose: bool) -> None:
    """Routes warnings into logging (``logging.captureWarnings``) and, unless ``verbose``,
    keeps log records below ERROR off the console: they reach the log file only. Sets
    ``COLUMNS`` (read by every rich console) when stdout is not a terminal."""
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", str(LOG_WIDTH))
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:  # Lightning's own console handler, when it loaded first
        library = logging.getLogger(name)
        for handler in [h for h in library.handlers if type(h) is logging.StreamHandler]:
            library.removeHandler(handler)
            library.propagate = True  # to the log file (and the console) like the rest
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the console, not a FileHandler
            handler.setLevel(logging.ERROR)


def stage_header(title: str, detail: str) -> None:
    """The one line that opens a stage."""
    Console().print(f"[bold]── {title}[/] [dim]{detail}[/]", highlight=False)
