"""Leaving without the interpreter's teardown loses nothing a normal exit would have done:
non-daemon threads finish, atexit callbacks run, buffered output and log records reach their
files, and the exit code is kept; under a profiler the process exits as usual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

SCRIPT = """
import atexit, logging, logging.handlers, sys, threading, time
from pathlib import Path
from paradigms.runner.process_exit import exit_without_teardown

out = Path(sys.argv[1])
# a record held in memory until logging's atexit shutdown flushes it to the file
held = logging.handlers.MemoryHandler(100, target=logging.FileHandler(out / "run.log"))
logging.basicConfig(handlers=[held], level=logging.INFO)
logging.info("a record still in the handler's buffer")
atexit.register(lambda: (out / "atexit.txt").write_text("ran"))

def late_writer():
    time.sleep(0.5)
    (out / "thread.txt").write_text("finished")

threading.Thread(target=late_writer).start()
sys.stdout.write("no newline, still buffered")
exit_without_teardown(3)
print("never printed")
"""


def run(tmp_path: Path, *python_flags: str) -> subprocess.CompletedProcess:
    script = tmp_path / "leave.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, *python_flags, str(script), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
    )


def test_threads_atexit_logs_and_streams_are_done_before_the_process_ends(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 3
    assert done.stdout == "no newline, still buffered"
    assert (tmp_path / "thread.txt").read_text() == "finished"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert "a record still in the handler's buffer" in (tmp_path / "run.log").read_text()


def test_under_a_profiler_the_process_exits_as_usual_so_the_profile_is_written(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "profile.out"
    done = run(tmp_path, "-m", "cProfile", "-o", str(profile))  # cProfile swallows SystemExit
    assert done.stdout == "no newline, still buffered"
    assert profile.stat().st_size > 0  # cProfile writes after the script; os._exit would skip it
