"""The run's event stream: human-readable lines on a terminal (rich), or one JSON object per line.

Everything printed goes through the secret registry first. Logs go to stderr so that stdout stays free for
command results (`iac-runner outputs` prints JSON there).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any, Literal

from iac_runner.common.errors import truncate
from iac_runner.common.secrets import REGISTRY, redact_all

LogFormat = Literal["text", "json"]
#: A log line is cut at this many bytes: an engine that echoes a 50 MB value must not flood the pod's log.
LINE_LIMIT = 8192

_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "step": "bold cyan"}
_STATUS_STYLES = {"done": "green", "failed": "red", "in progress": "cyan"}


class Log:
    def __init__(self) -> None:
        self.format: LogFormat = "text"
        self.debug_enabled = False
        self._stream: IO[str] = sys.stderr
        self._console: Any = None
        self._started = time.monotonic()

    def configure(self, fmt: LogFormat = "text", *, debug: bool = False, stream: IO[str] | None = None) -> None:
        self.format = fmt
        self.debug_enabled = debug
        self._stream = stream or sys.stderr
        self._console = None

    def debug(self, message: str, **fields: Any) -> None:
        if self.debug_enabled:
            self._emit("debug", "log", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", "log", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit("warning", "log", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit("error", "log", message, fields)

    def step(self, message: str, **fields: Any) -> None:
        """A stage of the run (checkout, validate, apply, outputs): what the user watches for."""
        self._emit("step", "step", message, fields)

    def resource(self, address: str, status: str, detail: str = "", **fields: Any) -> None:
        """Per-resource progress reported by an engine."""
        fields = {"address": address, "status": status, **({"detail": detail} if detail else {}), **fields}
        text = f"  {address}: {status}" + (f" ({detail})" if detail else "")
        self._emit("info", "resource", text, fields, style=_STATUS_STYLES.get(status, ""))

    def engine_line(self, engine: str, line: str) -> None:
        """A line an engine printed, passed through as is (after redaction)."""
        self._emit("info", "engine", line, {"engine": engine}, style="dim")

    def _emit(self, level: str, kind: str, message: str, fields: dict[str, Any], style: str | None = None) -> None:
        message = truncate(REGISTRY.redact(message), LINE_LIMIT)
        if self.format == "json":
            record = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "level": "info" if level == "step" else level,
                "event": kind,
                "message": message,
                **{k: _short(redact_all(v)) for k, v in fields.items()},
            }
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()
            return
        self._text(level, message, style if style is not None else _STYLES[level])

    def _text(self, level: str, message: str, style: str) -> None:
        elapsed = time.monotonic() - self._started
        prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
        marker = "==> " if level == "step" else ""
        if not self._stream.isatty():
            # A Job's log, CI and pipes get no styles: the same line without importing rich (~35 ms a run).
            self._stream.write(f"{elapsed:6.1f}s {marker}{prefix}{message}\n")
            self._stream.flush()
            return
        from rich.console import Console
        from rich.text import Text

        if self._console is None:
            self._console = Console(file=self._stream, highlight=False, soft_wrap=True)
        line = Text(f"{elapsed:6.1f}s ", style="dim")
        line.append(f"{marker}{prefix}{message}", style=style)
        self._console.print(line)


def _short(value: Any) -> Any:
    return truncate(value, LINE_LIMIT) if isinstance(value, str) else value


log = Log()
