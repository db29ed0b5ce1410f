"""One exception tree: every failure the runner reports maps to an exit code and a human-readable reason.

Backends and core modules raise these; only the CLI turns them into an exit code, a log line and the
driver's ERROR_FILE.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ENGINE = 1
    CONFIG = 2
    TIMEOUT = 3
    INTERRUPTED = 130


ERROR_FILE_LIMIT = 4096


@dataclass(frozen=True)
class Diagnostic:
    """One of the engine's own findings (a tofu diagnostic, a Pulumi diagnostic event, a CloudFormation failed
    resource event), kept as the engine gave it for the run report."""

    severity: str
    summary: str
    detail: str = ""
    address: str = ""
    file: str = ""
    line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else self.file


class RunnerError(Exception):
    """A failure with a one-sentence summary plus where it happened and how to fix it, and, where the engine gave
    them, the failing resource and the engine's diagnostics."""

    exit_code = ExitCode.ENGINE

    def __init__(
        self,
        summary: str,
        *,
        where: str = "",
        fix: str = "",
        details: str = "",
        resource: str = "",
        diagnostics: tuple[Diagnostic, ...] = (),
    ) -> None:
        super().__init__(summary)
        self.summary = summary.rstrip()
        self.where = where
        self.fix = fix
        self.details = details
        self.resource = resource
        self.diagnostics = diagnostics

    def render(self) -> str:
        """The ERROR_FILE text: first line the summary, then where, how to fix and engine details."""
        lines = [self.summary]
        if self.where:
            lines.append(f"Where: {self.where}")
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        if self.details:
            lines.append("")
            lines.append(self.details.rstrip())
        return truncate("\n".join(lines), ERROR_FILE_LIMIT)


class ConfigError(RunnerError):
    """Invalid input or configuration: nothing was changed."""

    exit_code = ExitCode.CONFIG


class EngineError(RunnerError):
    """The engine reported a failure while changing or reading infrastructure."""

    exit_code = ExitCode.ENGINE


class RunTimeout(RunnerError):
    exit_code = ExitCode.TIMEOUT


class Interrupted(RunnerError):
    exit_code = ExitCode.INTERRUPTED


def truncate(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes, saying that it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    marker = "\n[... truncated]"
    return data[: limit - len(marker.encode())].decode(errors="ignore") + marker
