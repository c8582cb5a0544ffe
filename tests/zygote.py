"""A process that imports torch, Lightning, timm and Hydra once; each ``python cli.py`` run of
the tests is a fork of it (``tests.helpers.cli``).

Starting an interpreter and importing that stack costs about 6 s of one core here, more than
most test runs train, and the suite starts a hundred and more runs. A fork of a process that
only imported is a fresh run in every way that matters: its own pid, signals, environment,
working directory, file descriptors and exit status; ``cli.py`` runs as ``__main__`` exactly as
``python cli.py`` runs it. (Forking after an OpenMP thread pool has run is unsafe; this process
never computes.) Tests of what happens before torch loads start a real interpreter instead.

Protocol, one JSON line each way: the test sends ``{"args", "env", "cwd", "stdout",
"stderr"}``; this process forks, answers ``{"pid"}``, waits for the child and answers
``{"returncode"}`` (negative: killed by that signal, as ``subprocess`` says it).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import runpy
import signal
import sys
import traceback

import hydra  # noqa: F401  (imported once here, inherited by every run)
import pytorch_lightning  # noqa: F401
import timm  # noqa: F401
import torch  # noqa: F401


def _child(request: dict) -> None:
    """Becomes ``python cli.py <args>`` and never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own group, so a signal to it (and its DDP ranks) stops no test
        # Ctrl-C and SIGTERM as a fresh `python cli.py` in a terminal has them: the zygote
        # inherits its test process's dispositions, and an earlier test in that process may
        # have left SIGINT ignored, which made a Ctrl-C test run to its end.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the request pipe is the zygote's, not the run's
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["args"]
        sys.path[0] = request["cwd"]
        try:
            runpy.run_path(request["args"][0], run_name="__main__")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, (int, type(None))):
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - the run's traceback, as the interpreter prints it
            traceback.print_exc()
        atexit._run_exitfuncs()
        logging.shutdown()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
