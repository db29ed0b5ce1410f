"""Pulumi's failures in the runner's words: what the engine printed (the Automation API's CommandError, the
diagnostics of the engine's events) classified as bad input (exit 2) or an engine failure (exit 1), with the
program's own exception and line instead of a traceback."""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iac_runner.common.aws import is_missing_bucket, missing_bucket
from iac_runner.common.errors import ConfigError, EngineError, RunnerError

_MISSING_CONFIG = re.compile(r"Missing required configuration variable '([^']+)'")
_TRACEBACK_FILE = re.compile(r'File "([^"]+)", line (\d+)')
_GRPC_WRAPPER = re.compile(r"^Exception calling application: ")
_EXCEPTION_TYPE = re.compile(r"^[\w.]+: ")
# `pulumi cancel`'s lock: its file (a URL with a query from 3.2xx on) and who holds it.
_LOCK = re.compile(r"(\S+?\.json)(?:\?\S*)?: created by (.+)")
_MISSING_PLUGIN = re.compile(
    r"Could not automatically download and install (\w+) plugin 'pulumi-\w+-([\w.-]+)' at version (v[\w.+-]+)"
)
# The engine's own words (a provider's "already exists", with a stack's URN or folder beside it, is not this).
_STACK_EXISTS = re.compile(r"\bstack '[^'\n]+' already exists", re.IGNORECASE)
_KILLED = re.compile(r"^\s*code: -(\d+)\s*$", re.MULTILINE)  # the Automation API's report of a signalled CLI
_SIGNALS = {int(s) for s in signal.Signals}


@dataclass(frozen=True)
class Scene:
    """Where a failure happened, for its message."""

    project: str
    stack: str
    folder: Path
    state_url: str | None
    pulumi_home: str

    @property
    def where(self) -> str:
        return f"Pulumi project {self.project}, stack {self.stack}"


def classify(text: str, scene: Scene, doing: str, resource_errors: Sequence[tuple[str, str]] = ()) -> RunnerError:
    """Pulumi's failure text as one of the runner's errors, with the program's own words where it has them."""
    lower = text.lower()
    where = scene.where
    missing = _MISSING_CONFIG.search(text)
    if missing:
        return ConfigError(
            f"The program requires configuration {missing.group(1)!r}, which the inputs do not give.",
            where=where,
            fix=f"Add {missing.group(1).split(':', 1)[-1]!r} to the resource inputs (or as a secret input).",
        )
    if "incorrect passphrase" in lower or "passphrase must be set" in lower:
        return ConfigError(
            "The stack's secrets cannot be decrypted: PULUMI_CONFIG_PASSPHRASE is wrong or missing.",
            where=where,
            fix="Set PULUMI_CONFIG_PASSPHRASE to the passphrase the stack was created with.",
        )
    if "currently locked" in lower or "conflict: another update is currently in progress" in lower:
        lock = _LOCK.search(text)
        return EngineError(
            "The stack is locked by another update.",
            where=f"{where}; lock {lock.group(1)} held by {lock.group(2)}" if lock else where,
            fix="Wait for that update to finish. If it died, run again with `iac-runner <verb> --cancel-lock` "
            "(pulumi cancel semantics); iac-runner never cancels by itself.",
        )
    if _STACK_EXISTS.search(text):
        return EngineError(
            f"Stack {scene.stack} was created by another run at the same moment.",
            where=where,
            fix="Two runs of one stack started together: run again; the stack exists now and the engine's lock "
            "makes the next runs take turns.",
            details=tail(text),
            transient="the stack was created by another run at the same moment",
        )
    if is_missing_bucket(text):
        return missing_bucket(scene.state_url, tail(text))
    if "program failed with an unhandled exception" in lower:
        return _program_error(text, where, scene.folder)
    plugin = _MISSING_PLUGIN.search(text)
    if plugin:
        kind, name, version = plugin.groups()
        return ConfigError(
            f"A provider plugin the program needs is not available: pulumi-{kind}-{name} {version}.",
            where=f"{where}; PULUMI_HOME={scene.pulumi_home}",
            fix=f"Install it where the engine looks (`pulumi plugin install {kind} {name} {version}` with the same "
            "PULUMI_HOME), or run where get.pulumi.com is reachable: pulumi downloads plugins on first use.",
        )
    killed = _KILLED.search(text)
    if killed:
        name = signal.Signals(int(killed.group(1))).name if int(killed.group(1)) in _SIGNALS else killed.group(1)
        return EngineError(
            f"pulumi was killed by signal {name} while {doing}.",
            where=where,
            fix="Run again: create converges. A killed pulumi leaves its lock on the stack; if the next run reports "
            "the stack locked and no other run is going on, run `iac-runner <verb> --cancel-lock` once.",
            details=tail(text),
        )
    if resource_errors:
        return _resource_error(resource_errors, where, doing)
    if "traceback" in lower:
        return _program_error(text, where, scene.folder)
    return EngineError(
        f"pulumi failed while {doing}.", where=where, fix="See the engine's message below.", details=tail(text)
    )


def _resource_error(resource_errors: Sequence[tuple[str, str]], where: str, doing: str) -> EngineError:
    """A provider's failure: its own message, without the gRPC wrapper, the traceback (current SDKs send the
    dynamic provider's whole traceback) and the CLI's progress around it."""
    messages = [provider_message(message) for _, message in resource_errors]
    first = messages[0].splitlines()[0] if messages[0].strip() else "no message"
    return EngineError(
        f"Resource {resource_errors[0][0]} failed while {doing}: {first[:160]}",
        where=f"{where}; resource(s) {', '.join(dict.fromkeys(name for name, _ in resource_errors))}",
        fix="Fix the cause the provider reports, then run again: create converges from where it stopped.",
        details=tail("\n".join(messages)),
        resource=resource_errors[0][0],
    )


def provider_message(message: str) -> str:
    if "Traceback (most recent call last):" in message:
        exception, _ = _last_exception(message)
        if exception:
            # As SDKs before 3.1xx sent it: the exception's text without its type.
            return _EXCEPTION_TYPE.sub("", exception)
    return _GRPC_WRAPPER.sub("", message)


def _program_error(text: str, where: str, folder: Path) -> EngineError:
    """The program's own exception and the line that raised it, not the traceback and gRPC noise around it
    (the error file carries no Python traceback: the program's frames are named, innermost first)."""
    exception, frames = _last_exception(text)
    own = [(f, n) for f, n in frames if _inside(f, folder)]
    own = own or [(f, n) for f, n in frames if "/site-packages/" not in f and not f.startswith("<")] or frames
    location = f"{Path(own[-1][0]).name}:{own[-1][1]}" if own else where
    callers = [f"{Path(f).name}:{n}" for f, n in reversed(own[:-1])]
    return EngineError(
        f"The Pulumi program failed: {exception or 'an unhandled exception'}",
        where=location + (f", called from {', '.join(callers)}" if callers else "") + f" ({where})",
        fix="Fix the program (or the inputs it reads) and run again.",
    )


def _last_exception(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The exception line and frames of the first Python traceback in `text` (the engine repeats it); with
    chained exceptions, those of the last one in the chain."""
    lines = text.splitlines()
    exception, frames = "", list[tuple[str, str]]()
    start = next((i for i, line in enumerate(lines) if "Traceback (most recent call last):" in line), None)
    while start is not None:
        indent = len(lines[start]) - len(lines[start].lstrip())
        frames = []
        exception = ""
        index = start + 1
        for index in range(start + 1, len(lines)):
            line = lines[index]
            found = _TRACEBACK_FILE.search(line)
            if found:
                frames.append((found.group(1), found.group(2)))
            elif line.strip() and len(line) - len(line.lstrip()) <= indent:
                exception = line.strip()
                break
        following = " ".join(lines[index + 1 : index + 3])
        chained = "During handling of the above exception" in following or "direct cause of" in following
        start = next((i for i in range(index + 1, len(lines)) if "Traceback (most recent" in lines[i]), None)
        if not chained:
            break
    return exception, frames


def _inside(path: str, folder: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(path).resolve().is_relative_to(folder.resolve())
    return False


_FRAMING = re.compile(r"^\s*(code: -?\d+|stdout:|stderr:)\s*")


def tail(text: str) -> str:
    """The engine's last lines, without the Automation API's `code:/stdout:/stderr:` framing and the CLI's
    progress dots."""
    lines = []
    for raw in text.splitlines():
        line = _FRAMING.sub("", raw)
        if line.strip() and not line.startswith("@ "):
            lines.append(line)
    return "\n".join(lines[-25:])
