from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    """Raised as a BaseException inside the run, so no SDK's `except Exception` swallows it; the run's end turns it
    into the runner's Interrupted."""
    swallowed = False
    with pytest.raises(Interrupted, match="SIGINT"), process.forward_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except Exception:  # what boto3's retry loops do
            swallowed = True
    assert not swallowed


def test_a_signal_before_the_run_ends_it_as_soon_as_it_starts() -> None:
    process.catch_signals_early()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert process.signal_received() == signal.SIGTERM
        with pytest.raises(Interrupted, match="SIGTERM"), process.forward_signals():
            time.sleep(5)
        assert process.signal_received() is None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_engines_get_the_private_umask_and_die_with_the_runner(tmp_path: Path) -> None:
    script = (
        "import os, time, pathlib\n"
        "pathlib.Path('state').write_text('s')\n"
        "print(oct(os.stat('state').st_mode & 0o777), flush=True)\n"
    )
    done = process.run([sys.executable, "-c", script], engine="python", deadline=Deadline(30), cwd=tmp_path)
    assert done.stdout.strip() == "0o600"


def test_an_engine_outlives_no_runner_killed_with_sigkill(tmp_path: Path) -> None:
    """A runner (here a child Python) SIGKILLed while its engine runs: the engine gets SIGINT and stops."""
    marker = tmp_path / "engine-stopped"
    engine = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGINT, lambda *_: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0)))\n"
        "print('engine ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = (
        "import sys\n"
        "from iac_runner.common import process\n"
        "process.run([sys.executable, '-c', sys.argv[1]], engine='python', deadline=process.Deadline(60),"
        " on_stdout=lambda line: print(line, flush=True))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", runner, engine], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "engine ready"
    child.kill()
    child.wait()
    for _ in range(100):
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.exists(), "the engine kept running after its runner was killed"


class _SignalsInItsFinalizer:
    """An object whose finalizer receives SIGTERM: the handler's Signalled is raised inside `__del__`, where
    Python drops it (as when garbage collection runs a finalizer at the moment a signal arrives)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs here, inside the finalizer


def test_a_signal_dropped_in_a_finalizer_is_raised_at_the_next_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_value))
    started: list[str] = []
    with pytest.raises(Interrupted, match=r"interrupted by SIGTERM\.$"), process.forward_signals():
        finalized = _SignalsInItsFinalizer()
        del finalized
        assert dropped and isinstance(dropped[0], process.Signalled), "Python dropped it"
        Deadline(60).check("starting a change")  # the checkpoint before a change raises it again
        started.append("the change")
    assert not started


def test_a_dropped_signal_with_no_checkpoint_after_it_still_ends_the_run_with_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)
    with pytest.raises(Interrupted, match="after it had finished its work"), process.forward_signals():
        finalized = _SignalsInItsFinalizer()
        del finalized
