"""The one seam through which engine processes run: streaming, deadlines, signal forwarding, redaction.

Signals: while an engine runs, SIGTERM/SIGINT are forwarded to it as SIGINT (tofu and pulumi then stop
cleanly and save their state) and the run ends with `Interrupted` once it exits. With no engine running
(e.g. while polling CloudFormation) the signal interrupts the run at once.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from iac_runner.common.errors import EngineError, Interrupted, RunTimeout
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY

# After forwarding a signal, how long the engine gets to save state before it is killed.
GRACE_SECONDS = 60.0


class Deadline:
    """The run's overall time limit (IAC_RUNNER_TIMEOUT), shared by every step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def check(self, doing: str) -> None:
        if self.remaining() <= 0:
            raise RunTimeout(
                f"The run exceeded its time limit of {self.seconds:g} s while {doing}.",
                fix="Raise IAC_RUNNER_TIMEOUT (--timeout) if the stack needs longer, then run again: "
                "create is idempotent and converges.",
            )


class _Interrupts:
    """Which signal arrived and which engine processes are running to receive it."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.children: set[subprocess.Popen[bytes]] = set()

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if self.children:
            for child in list(self.children):
                signal_group(child, signal.SIGINT)
            if first:
                log.warning(f"received {signal.Signals(signum).name}: asked the engine to stop and save its state")
            return
        raise interrupted(signum)


_interrupts = _Interrupts()


def signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the engine's whole process group, as a terminal's Ctrl-C would: its plugins and helpers too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def interrupted(signum: int) -> Interrupted:
    name = signal.Signals(signum).name
    return Interrupted(
        f"The run was interrupted by {name}.",
        fix="Run the same action again: create is idempotent and converges from where it stopped.",
    )


@contextlib.contextmanager
def forward_signals() -> Iterator[None]:
    """Install SIGTERM/SIGINT handlers for the duration of a run (main thread only)."""
    previous = {sig: signal.signal(sig, _interrupts.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    _interrupts.received = None
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    engine: str,
    deadline: Deadline,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_stdout: Callable[[str], None] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    doing: str = "running the engine",
    stdin: str | None = None,
) -> Completed:
    """Run an engine command, streaming its lines, redacted, to the callbacks (default: the log).

    Returns the engine's output as it printed it, for parsing (an output value may hold a secret the secrets
    file needs whole); whatever shows it to a person redacts it again (the log and the error file do).
    Raises RunTimeout past the deadline and Interrupted after a forwarded signal. A non-zero exit code is
    returned, not raised: the caller knows what it means for its engine. `stdin` is how a secret reaches an
    engine command that would otherwise take it as an argument.
    """
    deadline.check(doing)
    default = (lambda line: log.engine_line(engine, line)) if on_stdout is None else on_stdout
    handlers = {"stdout": default, "stderr": on_stderr or (lambda line: log.engine_line(engine, line))}
    try:
        child = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Own process group: a terminal's Ctrl-C reaches the runner once, and the runner decides.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise EngineError(
            f"The {engine} executable {argv[0]!r} was not found.",
            fix=f"Install {engine} or put it on PATH; `iac-runner backends` shows what each backend finds.",
        ) from None
    _interrupts.children.add(child)
    if stdin is not None:
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(stdin.encode())
    collected: dict[str, list[str]] = {"stdout": [], "stderr": []}
    try:
        _pump(child, handlers, collected, deadline, doing)
    finally:
        _interrupts.children.discard(child)
    if _interrupts.received is not None:
        raise interrupted(_interrupts.received)
    return Completed(child.returncode, "".join(collected["stdout"]), "".join(collected["stderr"]))


def _pump(
    child: subprocess.Popen[bytes],
    handlers: Mapping[str, Callable[[str], None]],
    collected: dict[str, list[str]],
    deadline: Deadline,
    doing: str,
) -> None:
    selector = selectors.DefaultSelector()
    assert child.stdout is not None and child.stderr is not None
    selector.register(child.stdout, selectors.EVENT_READ, "stdout")
    selector.register(child.stderr, selectors.EVENT_READ, "stderr")
    partial = {"stdout": b"", "stderr": b""}
    killed_at: float | None = None
    open_streams = 2
    while open_streams:
        for key, _ in selector.select(timeout=0.2):
            name = str(key.data)
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                chunk = b"\n" if partial[name] else b""
            *lines, partial[name] = (partial[name] + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                collected[name].append(line + "\n")
                handlers[name](REGISTRY.redact(line))
        if deadline.remaining() <= 0 and killed_at is None:
            # Give the engine the same chance to save state as on a signal.
            signal_group(child, signal.SIGINT)
            killed_at = time.monotonic()
        if _interrupts.received is not None and killed_at is None:
            killed_at = time.monotonic()
        if killed_at is not None and time.monotonic() - killed_at > GRACE_SECONDS:
            signal_group(child, signal.SIGKILL)
    selector.close()
    child.wait()
    if killed_at is not None and _interrupts.received is None:
        deadline.check(doing)


class TrackedPopen(subprocess.Popen[bytes]):
    """A Popen for engine processes an SDK starts itself (Pulumi's Automation API): its own process group, and
    registered for signal forwarding and the deadline while it runs, like the processes of `run`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["start_new_session"] = True
        super().__init__(*args, **kwargs)
        _interrupts.children.add(self)

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            _interrupts.children.discard(self)


@contextlib.contextmanager
def supervised(deadline: Deadline, doing: str) -> Iterator[None]:
    """The deadline and signals for engine processes an SDK starts through `TrackedPopen`: at the deadline they
    get SIGINT (and SIGKILL after the grace period); a failure that follows a signal or the deadline is
    reported as such, not as the SDK's error."""
    deadline.check(doing)
    finished = threading.Event()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for sig, wait in ((signal.SIGINT, GRACE_SECONDS), (signal.SIGKILL, 0.0)):
            for child in list(_interrupts.children):
                signal_group(child, sig)
            if finished.wait(wait):
                return

    timer = threading.Timer(max(deadline.remaining(), 0.0), expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if _interrupts.received is not None:
            raise interrupted(_interrupts.received) from None
        if expired.is_set():
            deadline.check(doing)
        raise
    finally:
        finished.set()
        timer.cancel()
    if _interrupts.received is not None:
        raise interrupted(_interrupts.received)
