"""The run report: one JSON document, written atomically at the end of every run (success, failure, timeout or
interrupt), that says what the run did — the phases, the changes, the output names, the result — so that nobody
has to scrape a log. Its schema is docs/report.schema.json; no secret value is ever in it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iac_runner.backends.base import ChangeSummary, Drift, Output
from iac_runner.common.errors import DriftFound, ExitCode, Interrupted, RunnerError, RunTimeout
from iac_runner.common.files import write_atomic
from iac_runner.common.process import Signalled
from iac_runner.common.secrets import REGISTRY, redact_all

SCHEMA_VERSION = "1.0"
ACTIONS = ("add", "change", "remove", "replace")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_of(error: BaseException | None) -> str:
    if error is None or isinstance(error, DriftFound):
        return "succeeded"
    if isinstance(error, RunTimeout):
        return "timed_out"
    if isinstance(error, Interrupted | Signalled | KeyboardInterrupt):
        return "interrupted"
    return "failed"


def changes_json(summary: ChangeSummary) -> dict[str, Any]:
    """The `changes` object of the report and of `iac-runner plan --json`: counts per action and each resource."""
    counts = {action: sum(1 for c in summary.changes if c.action == action) for action in ACTIONS}
    return {
        **counts,
        "resources": [
            {
                "address": c.address,
                "type": c.type,
                "action": c.action,
                **({"reason": c.reason} if c.reason else {}),
                **({"attributes": list(c.attributes)} if c.attributes else {}),
            }
            for c in summary.changes
        ],
    }


def drift_json(drift: Drift) -> dict[str, Any]:
    return {
        "drifted": len(drift.resources),
        "resources": [
            {
                "address": r.address,
                "type": r.type,
                "status": "deleted" if r.deleted else "modified",
                "attributes": list(r.attributes),
            }
            for r in drift.resources
        ],
    }


@dataclass
class _Phase:
    name: str
    started: datetime
    seconds: float = 0.0
    result: str = "succeeded"


@dataclass
class RunReport:
    """What a run did; a backend adds to it through the `RunEvents` of its StackContext."""

    action: str
    started: datetime = field(default_factory=_now)
    backend: str | None = None
    engine: dict[str, str] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    stack: str | None = None
    phases: list[_Phase] = field(default_factory=list)
    planned: ChangeSummary | None = None
    drifted: Drift | None = None
    guard: dict[str, Any] | None = None
    outputs: dict[str, list[str]] | None = None
    _clock: float = field(default_factory=time.monotonic)

    # -- RunEvents ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        entry = _Phase(name, _now())
        self.phases.append(entry)
        started = time.monotonic()
        try:
            yield
        except BaseException as error:
            entry.result = status_of(error)
            raise
        finally:
            entry.seconds = round(time.monotonic() - started, 3)

    def changes(self, summary: ChangeSummary) -> None:
        self.planned = summary

    def engine_version(self, name: str, version: str) -> None:
        self.engine = {"name": name, "version": version}

    # -- what the job adds ----------------------------------------------------------------------------------

    def drift(self, drift: Drift) -> None:
        self.drifted = drift

    def output_names(self, outputs: list[Output]) -> None:
        self.outputs = {
            "values": sorted(o.name for o in outputs if not o.secret),
            "secrets": sorted(o.name for o in outputs if o.secret),
        }

    def document(self, exit_code: int, error: BaseException | None) -> dict[str, Any]:
        finished = _now()
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "runner": {"name": "iac-driver-runner", "version": _version()},
            "action": self.action,
            "backend": self.backend,
            "engine": self.engine or None,
            "source": self.source or None,
            "stack": self.stack,
            "started": _iso(self.started),
            "finished": _iso(finished),
            "duration_seconds": round(time.monotonic() - self._clock, 3),
            "phases": [
                {"name": p.name, "started": _iso(p.started), "duration_seconds": p.seconds, "result": p.result}
                for p in self.phases
            ],
            "changes": changes_json(self.planned) if self.planned is not None else None,
            "drift": drift_json(self.drifted) if self.drifted is not None else None,
            "guard": self.guard,
            "outputs": self.outputs,
            "result": {"status": status_of(error), "exit_code": exit_code},
            "error": _error(error) if error is not None and status_of(error) != "succeeded" else None,
        }
        return dict(redact_all(document))

    def write(self, path: Path, exit_code: int, error: BaseException | None) -> None:
        write_atomic(path, json.dumps(self.document(exit_code, error), indent=2) + "\n")


def _error(error: BaseException) -> dict[str, Any]:
    if not isinstance(error, RunnerError):
        return {"summary": REGISTRY.redact(str(error)) or type(error).__name__}
    found: dict[str, Any] = {"summary": error.summary}
    found.update({k: v for k, v in (("where", error.where), ("fix", error.fix), ("resource", error.resource)) if v})
    if error.diagnostics:
        found["diagnostics"] = [
            {
                "severity": d.severity,
                "summary": d.summary,
                **({"detail": d.detail} if d.detail else {}),
                **({"address": d.address} if d.address else {}),
                **({"file": d.file} if d.file else {}),
                **({"line": d.line} if d.line is not None else {}),
            }
            for d in error.diagnostics
        ]
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iac-driver-runner")
    except PackageNotFoundError:
        return "unknown"


def exit_code_of(error: BaseException | None) -> int:
    if error is None:
        return ExitCode.OK
    if isinstance(error, RunnerError):
        return int(error.exit_code)
    return ExitCode.INTERRUPTED if status_of(error) == "interrupted" else ExitCode.ENGINE
