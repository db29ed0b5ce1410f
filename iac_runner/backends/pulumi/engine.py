"""How the Pulumi engine is driven: which CLI, its environment (language host, state backend, secrets provider),
the program's virtualenv, and the Automation API's engine processes and event log under the runner's
supervision (deadline, signals)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from iac_runner.backends.base import EngineUnavailable
from iac_runner.common import aws, paths, process
from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY

PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 - the variable's name


def find_cli() -> str:
    found = paths.find_executable("pulumi")
    if found is None:
        raise EngineUnavailable(
            "'pulumi' is not on PATH: run `make tools` (builds the pinned Pulumi CLI and Python language host into "
            ".tools/bin) or install the Pulumi CLI"
        )
    return found


def find_cli_or_fail() -> str:
    try:
        return find_cli()
    except EngineUnavailable as exc:
        raise ConfigError(f"The Pulumi engine is not available: {exc}.", fix="See `iac-runner backends`.") from None


def base_env(env: dict[str, str], cli: str) -> dict[str, str]:
    """The engine's environment: the pinned CLI's folder first on PATH (its language host and the dynamic
    provider's plugin live beside it), no update checks."""
    env["PATH"] = f"{Path(cli).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    env.setdefault("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
    return env


def pulumi_home() -> Path:
    return paths.TOOLS / "pulumi-home" if paths.TOOLS.is_dir() else paths.cache_home() / "pulumi-home"


def check_passphrase(env: dict[str, str], has_secret_inputs: bool) -> None:
    """The passphrase secrets provider needs PULUMI_CONFIG_PASSPHRASE as soon as there is a secret to encrypt."""
    if PASSPHRASE in env or f"{PASSPHRASE}_FILE" in env:
        REGISTRY.add(env.get(PASSPHRASE, ""))
        return
    if has_secret_inputs:
        raise ConfigError(
            f"{PASSPHRASE} is not set, but the stack has secret inputs to encrypt.",
            where="the job's environment",
            fix=f"Set {PASSPHRASE} (from a secret) to the stack's passphrase; keep it the same for every run of the "
            "stack.",
        )
    log.warning(f"{PASSPHRASE} is not set: the stack's secrets are encrypted with an empty passphrase")
    env[PASSPHRASE] = ""


def backend_url(state_url: str, env: Mapping[str, str]) -> str:
    """IAC_RUNNER_STATE_URL as PULUMI_BACKEND_URL (an S3 URL carries the region and the emulator's endpoint)."""
    parts = urlsplit(state_url)
    if parts.scheme != "s3":
        return state_url
    query: dict[str, str] = {"region": aws.region(env)}
    endpoint = aws.s3_endpoint(env)
    if endpoint:
        point = urlsplit(endpoint)
        query.update({"endpoint": point.netloc, "s3ForcePathStyle": "true"})
        if point.scheme == "http":
            query["disableSSL"] = "true"
    return f"s3://{parts.netloc}{parts.path.rstrip('/')}?{urlencode(query)}"


def make_state_dir(state_url: str) -> None:
    """A `file://` state folder is created on first use (private: the state holds the stack's secrets), as tofu
    does; pulumi refuses a missing one."""
    parts = urlsplit(state_url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        try:
            paths.private_dir(Path(unquote(parts.path)))
        except OSError as exc:
            raise ConfigError(
                f"The state folder {parts.path} cannot be created: {exc.strerror}.",
                where=f"IAC_RUNNER_STATE_URL={state_url}",
                fix="Point IAC_RUNNER_STATE_URL at a writable folder (file:///abs/dir) or an S3 bucket.",
            ) from None


def state_note(env: Mapping[str, str]) -> str:
    url = env.get("PULUMI_BACKEND_URL")
    return f", state at {url.split('?')[0]}" if url else ""


Runner = Callable[[list[str], str], object]


def virtualenv(folder: Path, venv: Path, run: Runner) -> None:
    """The project's virtualenv, made the way `pulumi install` would and reused while its requirements stay the
    same: a cached venv per requirements file, linked where Pulumi.yaml expects it. `run(argv, doing)` runs a
    command through the session's process seam."""
    requirements = folder / "requirements.txt"
    target = venv if venv.is_absolute() else folder / venv
    if (target / "bin" / "python").exists():
        return
    digest = hashlib.sha256(requirements.read_bytes() if requirements.is_file() else b"").hexdigest()[:16]
    cached = paths.cache_home() / "venvs" / f"{digest}-py{sys.version_info.major}{sys.version_info.minor}"
    if not (cached / ".complete").exists():
        log.step(f"creating the project's virtualenv from {requirements.name} (cached for reuse)")
        shutil.rmtree(cached, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(cached)], "creating the virtualenv")
        if requirements.is_file():
            pip = [str(cached / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            run([*pip, "-r", str(requirements)], "installing the project's requirements")
        (cached / ".complete").touch()
    else:
        log.info(f"reusing the cached virtualenv for {requirements.name} ({digest})")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink() if target.is_symlink() else shutil.rmtree(target)
    target.symlink_to(cached, target_is_directory=True)


@contextlib.contextmanager
def finite_event_watch() -> Iterator[None]:
    """The Automation API (3.79) reads the engine's event log in a non-daemon thread that stops only at the
    engine's cancel event. A command that fails before the engine starts (a locked stack, a wrong passphrase, a
    missing state bucket) never writes one: the thread then polls forever and the runner never exits. This
    watcher also stops once the command is over (the API's cleanup runs after the CLI exited), and reads
    whole lines only (the CLI may be halfway through writing one)."""
    from pulumi.automation import EngineEvent, _stack

    original_watch, original_cleanup = vars(_stack)["_watch_logs"], vars(_stack)["_cleanup"]
    finished: dict[threading.Thread, threading.Event] = {}

    def watch(filename: str, callback: Any) -> None:
        done = finished.setdefault(threading.current_thread(), threading.Event())
        pending = ""
        with open(filename, encoding="utf-8") as events:
            while True:
                over = done.is_set()  # read before the file is read: then nothing more is coming
                pending += events.readline()
                if not pending.endswith("\n") and not (over and pending):
                    if over:
                        return
                    time.sleep(0.1)
                    continue
                line, pending = pending, ""
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    event = EngineEvent.from_json(json.loads(line))
                    try:
                        callback(event)
                    except Exception as exc:  # a progress callback must not kill the watcher
                        log.debug(f"engine event not shown: {type(exc).__name__}: {exc}")
                    if event.cancel_event:
                        return

    def cleanup(temp_dir: Any, thread: threading.Thread | None, on_exit_fn: Any = None) -> None:
        if thread is not None:
            finished.setdefault(thread, threading.Event()).set()
        original_cleanup(temp_dir, thread, on_exit_fn)
        if thread is not None:
            finished.pop(thread, None)

    setattr(_stack, "_watch_logs", watch)  # noqa: B010
    setattr(_stack, "_cleanup", cleanup)  # noqa: B010
    try:
        yield
    finally:
        setattr(_stack, "_watch_logs", original_watch)  # noqa: B010
        setattr(_stack, "_cleanup", original_cleanup)  # noqa: B010


@contextlib.contextmanager
def tracked_engine_processes() -> Iterator[None]:
    """Route the Automation API's engine processes through the runner's tracking (deadline, signals)."""
    from pulumi.automation import _cmd

    original = vars(_cmd)["subprocess"]
    # Only this module's view of `subprocess` changes; the rest of the process keeps the real one.
    setattr(_cmd, "subprocess", SimpleNamespace(**{**vars(original), "Popen": process.TrackedPopen}))  # noqa: B010
    try:
        yield
    finally:
        setattr(_cmd, "subprocess", original)  # noqa: B010
