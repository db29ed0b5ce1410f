"""The one seam through which engine processes run: streaming, deadlines, signal forwarding, redaction.

Signals: while an engine runs, SIGTERM/SIGINT are forwarded to it as SIGINT (tofu and pulumi then stop
cleanly and save their state) and the run ends with `Interrupted` once it exits. With no engine running
(e.g. while polling CloudFormation) the signal interrupts the run at once, as `Signalled`: a BaseException, so
that no SDK's `except Exception` (boto3 retries, for one) can swallow it. A signal that arrives before the run
starts (while Python imports) is remembered and ends the run as soon as it starts.

Engines never outlive the runner: each is started with the parent-death signal (Linux) set to SIGINT, so even a
SIGKILL of the runner makes tofu or pulumi stop and save their state; and a watchdog process, which learns each
engine's process group through a pipe, kills what is left of those groups (a provisioner's `sleep`, a plugin)
once the runner is gone and the engine had its chance to stop. Engines run with umask 077, so the state files
they write are readable by their owner only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from iac_runner.common.errors import ConfigError, Interrupted, RunTimeout
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY

# After forwarding a signal, how long the engine gets to save state before it is killed.
GRACE_SECONDS = 60.0
#: How long output may stay open after the engine exited before what holds it (an orphan) is killed.
ORPHAN_SECONDS = 5.0
#: Files and folders an engine creates are its user's only (state holds secrets).
ENGINE_UMASK = 0o077
_PR_SET_PDEATHSIG = 1


class Deadline:
    """A time limit: the run's overall one (IAC_RUNNER_TIMEOUT), or a phase's within it (`phase`)."""

    def __init__(
        self, seconds: float, *, setting: str = "IAC_RUNNER_TIMEOUT (--timeout)", phase: str = "", waits_for: str = ""
    ) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.setting = setting
        self.phase_name = phase
        #: What a phase reaches over the network, for the message when it runs out.
        self.waits_for = waits_for

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def phase(self, name: str, seconds: float | None, setting: str, waits_for: str = "") -> Deadline:
        """A limit for one phase (checkout, init) that ends no later than this one: a hung phase cannot eat the
        time the rest of the run needs, e.g. to save state."""
        if seconds is None or seconds >= self.remaining():
            return self
        return Deadline(seconds, setting=setting, phase=name, waits_for=waits_for)

    def check(self, doing: str) -> None:
        """Raise before the next step if the time is up, or if a signal's interruption was lost on the way."""
        _interrupts.raise_lost()
        if self.remaining() > 0:
            return
        if self.phase_name:
            raise RunTimeout(
                f"The {self.phase_name} phase exceeded its time limit of {self.seconds:g} s while {doing}.",
                where=self.setting,
                fix=f"Check the network path to {self.waits_for or f'what {self.phase_name} reaches'}, or raise "
                f"{self.setting}; nothing was changed by this phase.",
            )
        raise RunTimeout(
            f"The run exceeded its time limit of {self.seconds:g} s while {doing}.",
            fix=f"Raise {self.setting} if the stack needs longer, then run again: create is idempotent and converges.",
        )


class Signalled(BaseException):
    """SIGTERM or SIGINT arrived while no engine was running to forward it to."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Interrupts:
    """Which signal arrived and which engine processes are running to receive it."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.children: set[subprocess.Popen[bytes]] = set()
        #: A Signalled raised and not yet turned into the run's Interrupted: Python drops an exception raised
        #: inside a finalizer (`__del__`, as garbage collection may run one at any moment), so the next
        #: checkpoint raises it again.
        self.unreported: int | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if self.children:
            for child in list(self.children):
                signal_group(child, signal.SIGINT)
            if first:
                log.warning(f"received {signal.Signals(signum).name}: asked the engine to stop and save its state")
            return
        self.unreported = signum
        raise Signalled(signum)

    def raise_lost(self) -> None:
        if self.unreported is not None:
            raise Signalled(self.unreported)

    def remember(self, signum: int, _frame: FrameType | None) -> None:
        self.received = self.received or signum


_interrupts = _Interrupts()
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def catch_signals_early(received: int | None = None) -> None:
    """From the process's first moments: remember SIGTERM/SIGINT instead of dying of them, so that even a signal
    during start-up ends the run with exit 130 and the error file (`forward_signals` raises it). `received`: one
    the entry point caught before this module was imported."""
    _interrupts.received = _interrupts.received or received
    sys.unraisablehook = _unraisable
    for sig in _SIGNALS:
        signal.signal(sig, _interrupts.remember)


def _unraisable(unraisable: Any) -> None:
    """A Signalled that a finalizer swallowed is kept for the next checkpoint (`raise_lost`), not printed as a
    traceback in the job's log; anything else goes to Python's own hook."""
    if not isinstance(unraisable.exc_value, Signalled):
        sys.__unraisablehook__(unraisable)


def signal_received() -> int | None:
    return _interrupts.received


def signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the engine's whole process group, as a terminal's Ctrl-C would: its plugins and helpers too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def interrupted(signum: int, *, after_the_work: bool = False) -> Interrupted:
    """The run's error for a signal (the Signalled it may have raised is reported by this)."""
    _interrupts.unreported = None
    name = signal.Signals(signum).name
    if after_the_work:
        return Interrupted(
            f"The run was interrupted by {name} after it had finished its work.",
            where="the output files were written before the signal came",
            fix="Run the same action again if the orchestrator needs a clean exit: it finds nothing to change.",
        )
    return Interrupted(
        f"The run was interrupted by {name}.",
        fix="Run the same action again: create is idempotent and converges from where it stopped.",
    )


@contextlib.contextmanager
def forward_signals() -> Iterator[None]:
    """SIGTERM/SIGINT forwarded to the engines (or ending the run) for the duration of a run (main thread only).
    A signal that arrived before ends the run at once; one that arrives after is remembered."""
    previous = {sig: signal.signal(sig, _interrupts.handle) for sig in _SIGNALS}
    lost: int | None = None
    try:
        if _interrupts.received is not None:
            raise Signalled(_interrupts.received)
        yield
        lost = _interrupts.unreported  # raised where Python dropped it, and no checkpoint came after
    except Signalled as signalled:
        raise interrupted(signalled.signum) from None
    finally:
        _interrupts.received = None  # reported by now; a later signal is remembered afresh
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not _interrupts.handle else _interrupts.remember)
    if lost is not None:
        raise interrupted(lost, after_the_work=True)


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
    streams, ends = _engine_pipes()
    try:
        child = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=ends["stdout"],
            stderr=ends["stderr"],
            # The engine holds its own pipes' read ends too: if the runner is killed, its writes do not fail
            # (a Go program dies of SIGPIPE on a broken stdout), so it can stop and save its state.
            pass_fds=tuple(streams.values()),
            # Own process group: a terminal's Ctrl-C reaches the runner once, and the runner decides.
            start_new_session=True,
            umask=ENGINE_UMASK,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - a prctl call only; no locks, no imports
        )
    except OSError as exc:
        for fd in streams.values():
            os.close(fd)
        raise _cannot_start(engine, argv[0], exc) from None
    finally:
        for fd in ends.values():
            os.close(fd)
    _interrupts.children.add(child)
    _WATCHDOG.watch(child.pid)
    if stdin is not None:
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(stdin.encode())
    collected: dict[str, list[str]] = {"stdout": [], "stderr": []}
    try:
        _pump(child, streams, handlers=handlers, collected=collected, deadline=deadline, doing=doing)
    finally:
        _interrupts.children.discard(child)
        _WATCHDOG.release(child)
    if _interrupts.received is not None:
        raise interrupted(_interrupts.received)
    return Completed(child.returncode, "".join(collected["stdout"]), "".join(collected["stderr"]))


def _engine_pipes() -> tuple[dict[str, int], dict[str, int]]:
    """Pipes for the engine's stdout and stderr: (read ends, write ends), the write ends with room for what an
    engine prints while it stops after the runner died (1 MiB where the system allows)."""
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    for name in ("stdout", "stderr"):
        reads[name], writes[name] = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(writes[name], fcntl.F_SETPIPE_SZ, 1 << 20)
    return reads, writes


def _pump(
    child: subprocess.Popen[bytes],
    streams: Mapping[str, int],
    *,
    handlers: Mapping[str, Callable[[str], None]],
    collected: dict[str, list[str]],
    deadline: Deadline,
    doing: str,
) -> None:
    selector = selectors.DefaultSelector()
    for name, fd in streams.items():
        selector.register(fd, selectors.EVENT_READ, name)
    partial = {"stdout": b"", "stderr": b""}
    killed_at: float | None = None
    exited_at: float | None = None
    open_streams = 2
    while open_streams:
        for key, _ in selector.select(timeout=0.2):
            name = str(key.data)
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                os.close(key.fd)
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
        if exited_at is None and child.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > ORPHAN_SECONDS:
            # The engine is gone; what still holds its output open is an orphan of its group (a provisioner's
            # background child): it goes with its engine.
            signal_group(child, signal.SIGKILL)
    selector.close()
    child.wait()
    if killed_at is not None and _interrupts.received is None:
        deadline.check(doing)


def _cannot_start(engine: str, executable: str, exc: OSError) -> ConfigError:
    if isinstance(exc, FileNotFoundError):
        reason = "was not found"
    elif exc.errno == errno.ENOEXEC:
        reason = "is not a program this machine can run (exec format error)"
    elif isinstance(exc, PermissionError | IsADirectoryError):
        reason = "is not executable (a folder, or a file without the execute permission)"
    else:
        reason = f"could not be started: {exc.strerror}"
    return ConfigError(
        f"The {engine} executable {executable!r} {reason}.",
        where=executable,
        fix=f"Install {engine} or put the right binary on PATH (or in the setting that names it); "
        "`iac-runner backends` shows what each backend finds.",
    )


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec: ask the kernel to send it SIGINT when the runner dies (SIGKILL included),
    so the engine stops and saves its state instead of running on, orphaned, with the lock held."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arrange() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGINT)

    return arrange


class TrackedPopen(subprocess.Popen[bytes]):
    """A Popen for engine processes an SDK starts itself (Pulumi's Automation API): its own process group, the
    engines' umask and parent-death signal, and registered for signal forwarding and the deadline while it runs,
    like the processes of `run`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["start_new_session"] = True
        kwargs.setdefault("umask", ENGINE_UMASK)
        kwargs.setdefault("preexec_fn", _die_with_parent())
        super().__init__(*args, **kwargs)
        _interrupts.children.add(self)
        _WATCHDOG.watch(self.pid)

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            _interrupts.children.discard(self)
            _WATCHDOG.release(self)


class _Watchdog:
    """The runner's side of the watchdog: started with the first engine (Linux), told of each engine's group."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def watch(self, pgid: int) -> None:
        self._tell(f"+{pgid}\n")

    def release(self, child: subprocess.Popen[Any]) -> None:
        """The engine exited: what is left of its group are orphans (a provisioner's children), stopped now."""
        signal_group(child, signal.SIGKILL)
        self._tell(f"-{child.pid}\n")

    def _tell(self, line: str) -> None:
        if not sys.platform.startswith("linux"):
            return
        with self._lock:
            try:
                if self._proc is None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", str(Path(__file__).with_name("watchdog.py")), str(GRACE_SECONDS)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        text=True,
                        start_new_session=True,  # a Ctrl-C to the runner's group must not stop it
                    )
                assert self._proc.stdin is not None
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except OSError as exc:
                log.debug(f"engine watchdog unavailable: {exc}")


_WATCHDOG = _Watchdog()
