"""tofu's machine-readable UI (the JSON lines of `-json`) as progress, planned changes and the runner's errors.

Nothing here runs tofu: each function takes what tofu printed, so the parsing and the classification of every
failure (configuration, inputs, locks, init, a lost state backend, an engine panic) are tested without the binary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iac_runner.backends.base import Drift, DriftedResource, InputSpec, ResourceChange
from iac_runner.common.aws import is_missing_bucket, missing_bucket
from iac_runner.common.errors import ConfigError, Diagnostic, EngineError, RunnerError
from iac_runner.common.log import log
from iac_runner.common.retry import transient_reason

_ACTIONS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
# Diagnostics about the inputs: configuration errors however late the engine finds them.
INPUT_PROBLEMS = (
    "No value for required variable",
    "Value for undeclared variable",
    "Invalid value for input variable",
    "Invalid value for variable",
)
_LOCK_FIELDS = re.compile(r"^\s*(ID|Path|Operation|Who|Version|Created|Info):\s*(.*)$", re.MULTILINE)


@dataclass
class Diagnostics:
    """Diagnostics and progress from one engine command's JSON lines."""

    #: apply and destroy repeat the plan's changes: shown once, by the plan.
    show_changes: bool = True
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    changes: list[ResourceChange] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: Lines that were not JSON (a panic's trace, a provider's crash), for the error message.
    other: list[str] = field(default_factory=list)
    #: The engine's version, from its first message.
    version: str = ""
    #: The engine began changing a resource: doing the same again is not safe without a new plan.
    started: bool = False

    def line(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            self.other.append(raw)
            log.engine_line("tofu", raw)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        hook = message.get("hook") or {}
        address = (hook.get("resource") or {}).get("addr", "")
        if kind == "diagnostic":
            diagnostic = message.get("diagnostic", {})
            if diagnostic.get("severity") == "error":
                self.errors.append(diagnostic)
            else:
                self.warnings.append(diagnostic)
                log.warning(describe(diagnostic))
        elif kind == "planned_change":
            change = planned_change(message.get("change", {}))
            if change:
                self.changes.append(change)
                if self.show_changes:
                    why = f" ({change.reason})" if change.reason else ""
                    log.resource(change.address, f"will {change.action}", why.strip(" ()"))
        elif kind == "version":
            self.version = str(message.get("tofu") or message.get("terraform") or "")
        elif kind == "apply_start":
            self.started = True
            log.resource(address, "in progress", hook.get("action", ""))
        elif kind == "apply_progress":
            log.resource(address, "in progress", f"{hook.get('action', '')}, {hook.get('elapsed_seconds', 0)}s elapsed")
        elif kind == "apply_complete":
            log.resource(address, "done", f"{hook.get('action', '')} in {hook.get('elapsed_seconds', 0)}s")
        elif kind == "apply_errored":
            self.failed.append(address)
            log.resource(address, "failed", hook.get("action", ""))
        elif kind == "provision_progress":
            log.engine_line("tofu", f"{address}: {hook.get('output', '')}")
        else:
            log.debug(message.get("@message", raw))


def planned_change(change: Mapping[str, Any]) -> ResourceChange | None:
    """A `planned_change` message's change as the runner's, with tofu's reason for a replacement."""
    action = _ACTIONS.get(change.get("action", ""))
    if not action:
        return None
    resource = change.get("resource") or {}
    reason = str(change.get("reason") or "").replace("_", " ")
    unfinished = action == "replace" and reason == "tainted"
    return ResourceChange(resource.get("addr", "?"), action, resource.get("resource_type", ""), reason, (), unfinished)


def describe(diagnostic: Mapping[str, Any]) -> str:
    where = location(diagnostic)
    text = diagnostic.get("summary", "")
    detail = diagnostic.get("detail", "")
    return f"{where + ': ' if where else ''}{text}" + (f" — {detail}" if detail else "")


def location(diagnostic: Mapping[str, Any]) -> str:
    rng = diagnostic.get("range") or {}
    if not rng.get("filename"):
        return ""
    return f"{rng['filename']}:{rng.get('start', {}).get('line', '?')}"


def as_diagnostic(diagnostic: Mapping[str, Any]) -> Diagnostic:
    rng = diagnostic.get("range") or {}
    line = (rng.get("start") or {}).get("line")
    return Diagnostic(
        severity=str(diagnostic.get("severity", "error")),
        summary=str(diagnostic.get("summary", "")),
        detail=str(diagnostic.get("detail", "")),
        address=str(diagnostic.get("address", "")),
        file=str(rng.get("filename", "")),
        line=line if isinstance(line, int) else None,
    )


def _diagnostics(errors: list[dict[str, Any]]) -> tuple[Diagnostic, ...]:
    return tuple(as_diagnostic(e) for e in errors[:20])


def config_error(errors: list[dict[str, Any]], what: str) -> ConfigError:
    return ConfigError(
        f"{what}: {errors[0].get('summary', 'error')}.",
        where=location(errors[0]) or "the stack's configuration files",
        fix="Correct the configuration at the place shown; `iac-runner validate` checks it without touching state.",
        details="\n".join(describe(e) for e in errors[:10]),
        diagnostics=_diagnostics(errors),
    )


def input_problems(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in errors if str(e.get("summary", "")).startswith(INPUT_PROBLEMS)]


def input_summary(diagnostic: Mapping[str, Any]) -> str:
    """One sentence for an input problem tofu reported, naming the variable (tofu's detail goes to details)."""
    summary = diagnostic.get("summary", "")
    detail = diagnostic.get("detail", "")
    code = (diagnostic.get("snippet") or {}).get("code") or ""
    found = re.search(r'named "([^"]+)"|variable "([^"]+)"|\bvar\.([A-Za-z0-9_-]+)', f"{code}\n{detail}")
    name = next((g for g in found.groups() if g), "") if found else ""
    first = detail.strip().split("\n", 1)[0].strip().rstrip(".")
    if not name:
        return f"{summary}: {first}." if first else f"{summary}."
    if summary.startswith("Value for undeclared variable"):
        return f"Input {name!r} is not a declared variable of the stack."
    if summary.startswith("No value for required variable"):
        return f"Required variable {name!r} has no value."
    if summary.startswith("Invalid value for input variable"):
        return f"Input {name!r} has the wrong type: {first.rsplit(': ', 1)[-1]}."
    return f"Input {name!r} is not accepted by the stack's validation rule: {first}."


def inputs_error(
    summary: str, declared: Mapping[str, InputSpec], errors: list[dict[str, Any]] | None = None
) -> ConfigError:
    listing = ", ".join(f"{n}{'' if spec.required else ' (optional)'}" for n, spec in sorted(declared.items()))
    return ConfigError(
        summary if summary.endswith(".") else summary + ".",
        where=f"declared variables: {listing or 'none'}",
        fix="Give each required variable a value in the resource inputs (or a secret input), remove inputs the stack "
        "does not declare, and match each variable's type.",
        details="\n".join(describe(e) for e in (errors or [])[:5]),
        diagnostics=_diagnostics(errors or []),
    )


def engine_error(
    errors: list[dict[str, Any]], what: str, stderr: str, failed: list[str] | None = None, *, retry_safe: bool = True
) -> EngineError:
    """The engine's failure in its own words; `retry_safe`: no resource was touched, so a transient fault may be
    tried again from a new plan."""
    crashed = panic(stderr)
    if crashed:
        return crashed
    lines = [describe(e) for e in errors[:10]] or [line for line in stderr.splitlines() if line.strip()][-10:]
    return EngineError(
        f"{what}: {errors[0].get('summary', 'see details') if errors else 'see details'}.",
        where=", ".join(failed or []) or (location(errors[0]) if errors else "") or "",
        fix="Fix the cause shown below and run again; OpenTofu saved its state, so the next run continues from there.",
        details="\n".join(lines),
        resource=(failed or [""])[0],
        diagnostics=_diagnostics(errors),
        transient=transient(errors, stderr) if retry_safe and not failed else "",
    )


def replace_paths(plan: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per resource address, the attributes that force its replacement (`tofu show -json` of a saved plan)."""
    found: dict[str, tuple[str, ...]] = {}
    for change in plan.get("resource_changes") or []:
        paths = (change.get("change") or {}).get("replace_paths") or []
        names = tuple(".".join(str(step) for step in path) for path in paths if isinstance(path, list))
        if names:
            found[str(change.get("address", ""))] = names
    return found


def drift(plan: Mapping[str, Any]) -> Drift:
    """What the plan's refresh found changed or deleted behind the state's back (`resource_drift` of `tofu show
    -json`), each with the attributes that differ, kept to what an apply would put back (`resource_changes`): an
    attribute the provider computes, which another resource moved, is no drift, nor one under `ignore_changes`."""
    planned = {str(c.get("address", "")): c.get("change") or {} for c in plan.get("resource_changes") or []}
    resources = []
    for entry in plan.get("resource_drift") or []:
        address = str(entry.get("address", "?"))
        change = entry.get("change") or {}
        before, after = change.get("before") or {}, change.get("after") or {}
        deleted = "delete" in (change.get("actions") or []) and not after
        put_back = _changing(planned.get(address) or {})
        differ = sorted(k for k in {*before, *after} if before.get(k) != after.get(k) and k in put_back)
        if deleted or differ:
            resources.append(
                DriftedResource(address, str(entry.get("type", "")), () if deleted else tuple(differ), deleted)
            )
    return Drift(tuple(resources))


def _changing(change: Mapping[str, Any]) -> set[str]:
    """The attributes a planned change sets (none for a no-op)."""
    if set(change.get("actions") or ()) <= {"no-op", "read"}:
        return set()
    before, after = change.get("before") or {}, change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    return {k for k in {*before, *after, *unknown} if before.get(k) != after.get(k) or unknown.get(k) is True}


def lock_error(errors: list[dict[str, Any]], binary: str, state_url: str | None, text: str = "") -> EngineError | None:
    """A state lock another run holds, when tofu says so: only an acquisition refused with the holder's lock info
    is a held lock (a backend that cannot be reached, or a release that failed, is not)."""
    lock = next((e for e in errors if "acquiring the state lock" in str(e.get("summary", "")).lower()), None)
    body = (str(lock.get("detail", "")) if lock else "") or (text if "acquiring the state lock" in text.lower() else "")
    if "Lock Info:" not in body:
        return None
    info = dict(_LOCK_FIELDS.findall(body))
    return EngineError(
        f"The stack's state is locked by another run ({info.get('Who', 'unknown holder')}, "
        f"since {info.get('Created', 'an unknown time')}).",
        where=f"lock {info.get('ID', '?')} on {info.get('Path', state_url or 'the state')}, "
        f"operation {info.get('Operation', '?')}",
        fix=f"Wait for that run to finish (IAC_RUNNER_LOCK_TIMEOUT waits longer). If it died, release the lock: "
        f"`{Path(binary).name} -chdir=<stack> force-unlock {info.get('ID', '<ID>')}` with the same backend "
        "configuration. iac-runner never force-unlocks by itself.",
        diagnostics=_diagnostics(errors),
    )


def init_error(output: str, state_url: str | None, folder: Path) -> RunnerError:
    lower = output.lower()
    tail = "\n".join(line for line in output.splitlines() if line.strip())[-1500:]
    crashed = panic(output)
    if crashed:
        return crashed
    if is_missing_bucket(output):
        return missing_bucket(state_url, tail)
    reason = transient_reason(output)
    if reason:
        return EngineError(
            f"tofu init failed with {reason}.",
            where=f"the provider registry or the state backend ({state_url or 'local state'})",
            fix="Check the network path to the registry and the state backend, then run again.",
            details=tail,
            transient=reason,
        )
    if "provider" in lower and ("could not" in lower or "failed to" in lower or "no available" in lower):
        return ConfigError(
            "A provider the stack needs is not available to `tofu init` (no network registry here).",
            where=str(folder),
            fix="Add the provider to the offline mirror (`make tools`, TF_CLI_CONFIG_FILE with a filesystem_mirror), "
            "or run where the registry is reachable.",
            details=tail,
        )
    first = re.search(r"^Error: (.+)$", output, re.MULTILINE)
    at = re.search(r"^\s*on (\S+) line (\d+)", output, re.MULTILINE)
    # The runner reads init's human output (the classification above reads its messages): its first error and
    # place are the run report's diagnostic.
    found: tuple[Diagnostic, ...] = ()
    if first:
        line = int(at.group(2)) if at else None
        found = (Diagnostic("error", first.group(1).strip(), file=at.group(1) if at else "", line=line),)
    return ConfigError(
        f"tofu init failed: {first.group(1).strip().rstrip('.')}." if first else "tofu init failed.",
        where=f"{at.group(1)}:{at.group(2)} in {folder}" if at else str(folder),
        fix="Correct the configuration at the place shown (see the engine's message below).",
        details=tail,
        diagnostics=found,
    )


_STATE_NOT_SAVED = ("failed to save state", "failed to persist state", "error saving state")
_PANIC = re.compile(r"^(panic: .+|OpenTofu crashed!.*|Terraform crashed!.*)$", re.MULTILINE)


def state_not_saved(errors: list[dict[str, Any]], other: list[str]) -> bool:
    """tofu changed infrastructure but could not write the state to its backend (the backend went away)."""
    text = " ".join([*(f"{e.get('summary', '')} {e.get('detail', '')}" for e in errors), *other]).lower()
    return any(marker in text for marker in _STATE_NOT_SAVED)


def state_lost_error(found: Diagnostics, copy: Path | None, binary: str, state: str) -> EngineError:
    """The truth about a state tofu could not save: where its emergency copy is and how to push it back (and,
    when tofu could not release the lock either, that the lock is stale, not held by another run)."""
    tofu = Path(binary).name
    where = f"emergency copy of the state: {copy}" if copy else "tofu's emergency copy (errored.tfstate) was not found"
    unlock = ""
    if any("releasing the state lock" in e.get("summary", "").lower() for e in found.errors):
        unlock = (
            f" tofu could not release the state lock either: once the push succeeded, `{tofu} force-unlock` the "
            "lock ID that the next run names (it is this run's, not another's)."
        )
    return EngineError(
        "OpenTofu changed the infrastructure but could not save the state to its backend: the state backend "
        "went away during the run.",
        where=where,
        fix=f"Restore access to the state backend ({state}); then, in the stack's folder initialised for that "
        f"same state, run `{tofu} state push {copy or 'errored.tfstate'}` before the next run: without it the next "
        f"run does not know what this one created.{unlock}",
        details="\n".join(describe(e) for e in found.errors[:5]),
        diagnostics=_diagnostics(found.errors),
    )


def panic(text: str) -> EngineError | None:
    """The engine (or a provider) crashed: an engine failure with the panic's first line, never bad input."""
    found = _PANIC.search(text)
    if found is None:
        return None
    return EngineError(
        f"The engine crashed: {found.group(1).strip()[:300]}",
        where="tofu (or a provider plugin) panicked",
        fix="Run again (a crash under concurrent runs is often transient); if it repeats, report it to the engine "
        "or provider with the log above.",
        details="\n".join(line for line in text.splitlines() if line.strip())[-1500:],
    )


def transient(errors: list[dict[str, Any]], text: str) -> str:
    """Why a failure looks transient (a network fault, throttling, a 5xx from the state backend or the registry),
    or "" (a held lock, a configuration error, a failed resource are never transient)."""
    if any("Lock Info:" in str(e.get("detail", "")) for e in errors):
        return ""
    words = " ".join([*(f"{e.get('summary', '')} {e.get('detail', '')}" for e in errors), text])
    return transient_reason(words) or ""
