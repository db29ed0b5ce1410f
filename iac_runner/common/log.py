"""The run's event stream: human-readable lines (coloured on a terminal), or one JSON object per line.

Everything printed goes through the secret registry first. Logs go to stderr so that stdout stays free for
command results (`iac-runner outputs` prints JSON there).
"""

from __future__ import annotations

import json
import os
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
#: Select Graphic Rendition codes of the few styles a line uses.
_SGR = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class Log:
    def __init__(self) -> None:
        self.format: LogFormat = "text"
        self.debug_enabled = False
        self._stream: IO[str] = sys.stderr
        self._colour: bool | None = None
        self._started = time.monotonic()

    def configure(self, fmt: LogFormat = "text", *, debug: bool = False, stream: IO[str] | None = None) -> None:
        self.format = fmt
        self.debug_enabled = debug
        self._stream = stream or sys.stderr
        self._colour = None

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
        text = f"{marker}{prefix}{message}"
        if self._colours():
            self._stream.write(f"{_styled(f'{elapsed:6.1f}s', 'dim')} {_styled(text, style)}\n")
        else:
            self._stream.write(f"{elapsed:6.1f}s {text}\n")
        self._stream.flush()

    def _colours(self) -> bool:
        """Colours on a terminal, as the NO_COLOR / FORCE_COLOR conventions and TERM=dumb say; never in a pipe."""
        if self._colour is None:
            if os.environ.get("NO_COLOR"):
                self._colour = False
            elif os.environ.get("FORCE_COLOR"):
                self._colour = True
            else:
                self._colour = self._stream.isatty() and os.environ.get("TERM") != "dumb"
        return self._colour


def _styled(text: str, style: str) -> str:
    codes = ";".join(_SGR[word] for word in style.split())
    return f"\x1b[{codes}m{text}\x1b[0m" if codes else text


def _short(value: Any) -> Any:
    return truncate(value, LINE_LIMIT) if isinstance(value, str) else value


log = Log()
