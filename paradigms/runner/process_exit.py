"""The end of a finished CLI process: what a normal exit does that a run needs, less the
interpreter's teardown.

With torch, timm and torchmetrics loaded, tearing the interpreter down (clearing every module,
collecting what it held, libtorch's static destructors) takes 1.0-1.3 s on two CPUs
(``bench/bench_startup.py``'s two exit rows) and does nothing a finished run needs. What a normal
exit does first, in the same order, is done here: wait for non-daemon threads, run the
``atexit`` callbacks (logging's flush and close of ``cli.log``, trackers' finish), flush the
standard streams. A file the run wrote is closed when it is written (``with`` blocks, loggers'
``finalize``), so nothing of it waits for the teardown. Under a debugger, profiler or
coverage tracer, or ``python -i``, the process exits as usual: they act after the script.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_without_teardown(code: int = 0) -> NoReturn:
    """Ends the process with ``code`` once every non-daemon thread, ``atexit`` callback and
    standard stream is done; only the interpreter's teardown is skipped. Under a tracer,
    a profiler or ``python -i`` it leaves through ``sys.exit`` instead."""
    if sys.gettrace() is not None or sys.getprofile() is not None or sys.flags.inspect:
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the one way to run them now; a normal exit runs the same list
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(code)
