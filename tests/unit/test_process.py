from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from iac_runner.common import process
from iac_runner.common.errors import Interrupted, RunTimeout
from iac_runner.common.process import Deadline
from iac_runner.common.secrets import REGISTRY


def test_streams_lines_and_redacts() -> None:
    REGISTRY.add("streamed-secret-value")
    lines: list[str] = []
    done = process.run(
        [sys.executable, "-c", "print('a'); print('streamed-secret-value'); import sys; print('e', file=sys.stderr)"],
        engine="python",
        deadline=Deadline(30),
        on_stdout=lines.append,
        on_stderr=lines.append,
    )
    assert done.returncode == 0
    assert lines[:2] == ["a", "***"] and "e" in lines
    assert "streamed-secret-value" in done.stdout, "the result is the engine's own output, for parsing"


def test_nonzero_exit_is_returned() -> None:
    done = process.run([sys.executable, "-c", "raise SystemExit(3)"], engine="python", deadline=Deadline(30))
    assert done.returncode == 3


def test_missing_executable_is_an_engine_error() -> None:
    with pytest.raises(Exception, match="was not found"):
        process.run(["/nonexistent/tofu"], engine="tofu", deadline=Deadline(30))


def test_deadline_interrupts_the_engine() -> None:
    started = time.monotonic()
    with pytest.raises(RunTimeout, match=r"time limit of 0\.5 s"):
        process.run([sys.executable, "-c", "import time; time.sleep(30)"], engine="python", deadline=Deadline(0.5))
    assert time.monotonic() - started < 10


def test_signal_is_forwarded_and_the_engine_finishes_first() -> None:
    # The engine traps SIGINT, "saves its state" and exits: the run then ends as Interrupted.
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n    print('saving state', flush=True); sys.exit(1)\n"
        "signal.signal(signal.SIGINT, stop)\nprint('ready', flush=True)\ntime.sleep(30)\n"
    )
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "ready":
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    with process.forward_signals(), pytest.raises(Interrupted, match="SIGTERM"):
        process.run([sys.executable, "-c", script], engine="python", deadline=Deadline(30), on_stdout=on_line)
    assert "saving state" in seen


def test_signal_without_an_engine_interrupts_at_once() -> None:
    with process.forward_signals(), pytest.raises(Interrupted, match="SIGINT"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
