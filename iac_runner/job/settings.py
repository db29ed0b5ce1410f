"""Settings of a run (contract part B), in one place.

Precedence: CLI flag > env var (`IAC_RUNNER_*`) > stack settings file (`iac-runner.yaml`) > default.
Every validation problem becomes one `ConfigError` naming the setting, its env var and flag, and the fix.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from iac_runner.backends.base import StackFile
from iac_runner.common import typed, yamlfile
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text
from iac_runner.job.source import GitSource

ENV_PREFIX = "IAC_RUNNER_"
SECRET_PREFIX = f"{ENV_PREFIX}SECRET_"
STACK_FILE = "iac-runner.yaml"
DEFAULT_TIMEOUT = 3600

_STATE_URL = typed.matching(
    r"^file:///",
    r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$",
    message="must be file:///absolute/dir or s3://bucket[/prefix]",
)
_SOURCE_URL = typed.matching(
    r"^(https?|ssh|file)://",
    r"^[\w.\-]+@[\w.\-]+:",
    message="must be an https://, ssh://, git@host:path or file:// git URL",
)


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told through `IAC_RUNNER_*` variables or the matching CLI flags.

    Read by `parse_settings` (`load_settings` for flags over the environment, where unknown `IAC_RUNNER_*`
    names are reported); values given blank mean unset where the field is `stripped`.
    """

    backend: str | None = typed.field(None, typed.stripped)
    source_url: str | None = typed.field(None, typed.stripped, _SOURCE_URL)
    source_ref: str | None = typed.field(None, typed.stripped)
    source_path: str | None = typed.field(None, typed.stripped)
    source_token: str | None = typed.field(None, typed.text, secret=True)
    source_username: str | None = typed.field(None, typed.text)
    source_ssh_key: str | None = typed.field(None, typed.text, secret=True)
    source_known_hosts: str | None = typed.field(None, typed.text)
    stack_name: str | None = typed.field(None, typed.stripped)
    state_url: str | None = typed.field(None, typed.stripped, _STATE_URL)
    source_include: str | None = typed.field(None, typed.text)
    timeout: int = typed.field(DEFAULT_TIMEOUT, typed.integer(gt=0))
    checkout_timeout: int = typed.field(300, typed.integer(gt=0))
    init_timeout: int = typed.field(300, typed.integer(gt=0))
    lock_timeout: int = typed.field(60, typed.integer(ge=0))
    retries: int = typed.field(2, typed.integer(ge=0, le=10))
    allow_replace: str | None = typed.field(None, typed.stripped)
    refresh: bool = typed.field(False, typed.boolean)
    report_file: str | None = typed.field(None, typed.stripped)
    tofu_binary: str | None = typed.field(None, typed.text)
    log_format: Literal["text", "json"] = typed.field("text", typed.choice("text", "json"))

    def include_paths(self) -> list[str]:
        """More folders of the repository to check out beside the stack's (IAC_RUNNER_SOURCE_INCLUDE)."""
        return [p.strip().strip("/") for p in (self.source_include or "").split(",") if p.strip().strip("/")]

    def allowed_replacements(self) -> set[str]:
        """Resources the replacement guard lets a create replace or remove ("all" for any)."""
        return {a.strip() for a in (self.allow_replace or "").split(",") if a.strip()}

    def git_source(self) -> GitSource | None:
        """Where to check the stack out from, when it does not come from SCRIPTS_DIRECTORY."""
        if not self.source_url:
            return None
        return GitSource(
            url=self.source_url,
            ref=self.source_ref,
            path=self.source_path,
            token=self.source_token or None,
            username=self.source_username,
            ssh_key=self.source_ssh_key or None,
            known_hosts=self.source_known_hosts,
            include=tuple(self.include_paths()),
        )


#: The names of the settings, as fields (`timeout`).
SETTING_NAMES = typed.names(Settings)
# Fields whose values are never echoed back in an error message.
_SECRET_FIELDS = typed.secrets(Settings)


def parse_settings(values: Mapping[str, Any]) -> Settings:
    """Settings from values by field name; raises typed.Invalid naming each bad one."""
    return typed.build(Settings, values)


def env_var(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from CLI flags (those not None) over `IAC_RUNNER_*` env vars."""
    environ = os.environ if environ is None else environ
    _reject_unknown_env(environ)
    env_values = {name: environ[env_var(name)] for name in SETTING_NAMES if env_var(name) in environ}
    explicit = {k: v for k, v in flags.items() if v is not None}
    try:
        # Values are passed explicitly (flags over env) so that tests and the CLI share one path.
        return parse_settings({**env_values, **explicit})
    except typed.Invalid as exc:
        raise _settings_error(exc, explicit) from None


def _reject_unknown_env(environ: Mapping[str, str]) -> None:
    known = {env_var(name) for name in SETTING_NAMES}
    unknown = sorted(
        k for k in environ if k.startswith(ENV_PREFIX) and k not in known and not k.startswith(SECRET_PREFIX)
    )
    if unknown:
        raise ConfigError(
            f"Unknown setting {unknown[0]} in the environment.",
            where="environment variables" + (f" (also: {', '.join(unknown[1:])})" if unknown[1:] else ""),
            fix=f"Check the spelling. Known settings: {', '.join(sorted(known))}, "
            f"and {SECRET_PREFIX}<NAME> for secret inputs.",
        )


def _settings_error(exc: typed.Invalid, explicit: Mapping[str, Any]) -> ConfigError:
    problems = []
    for problem in exc.problems:
        field = problem.field
        source = f"flag {flag(field)}" if field in explicit else f"env var {env_var(field)}"
        shown = "" if field in _SECRET_FIELDS else f" (got {problem.value!r})"
        problems.append(f"{source}: {problem.message}{shown}")
    first = problems[0]
    return ConfigError(
        f"Invalid setting: {first}.",
        where="; ".join(problems[1:]) or "",
        fix="Correct the value; see the settings table in the README (docs/contract.md).",
    )


def load_stack_file(folder: Path) -> StackFile:
    path = folder / STACK_FILE
    if not path.is_file():
        return StackFile()
    data = yamlfile.load(path, STACK_FILE) or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{STACK_FILE} must be a mapping of settings, not {type(data).__name__}.",
            where=str(path),
            fix="Write it as `key: value` lines, e.g. `backend: cloudformation`.",
        )
    try:
        return typed.build(StackFile, data)
    except typed.Invalid as exc:
        problem = exc.problems[0]
        key = ".".join(str(p) for p in problem.loc)
        if problem.unknown:
            summary = f"Unknown key {key!r} in {STACK_FILE}."
        else:
            summary = f"Invalid value for {key!r} in {STACK_FILE}: {problem.message}."
        known = ", ".join(typed.names(StackFile))
        raise ConfigError(summary, where=_line_of_key(path, problem.field), fix=f"Known keys: {known}.") from None


def _line_of_key(path: Path, key: str) -> str:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return f"{path}:{number}"
    return str(path)


def load_inputs_file(path: Path, label: str) -> dict[str, Any]:
    """A JSON object of inputs; anything else is a ConfigError naming the file."""
    text = read_text(path, "inputs file", where=f"{path} ({label})")
    try:
        data = strict_json(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"The inputs file is not valid JSON: {exc.msg}.",
            where=f"{path}:{exc.lineno}:{exc.colno} ({label})",
            fix='It must hold one JSON object, e.g. {"bucket_name": "my-bucket"}.',
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"The inputs file is not valid JSON: {exc}.",
            where=f"{path} ({label})",
            fix="Use finite numbers (JSON has no NaN or Infinity) and at most a few hundred levels of nesting.",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"The inputs file must hold a JSON object, not a JSON {_json_type(data)}.",
            where=f"{path} ({label})",
            fix='Wrap the inputs in an object: {"name": value, ...}.',
        )
    return data


def strict_json(text: str) -> Any:
    """JSON as the standard defines it: Python's parser also takes NaN and Infinity (and 1e400 becomes inf),
    which no engine can take. Raises JSONDecodeError, or ValueError for those and for absurd nesting."""

    def number(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ValueError(f"the number {literal[:40]} is out of range")
        return value

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(text, parse_float=number, parse_constant=constant)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def secret_inputs_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k[len(SECRET_PREFIX) :]: v for k, v in environ.items() if k.startswith(SECRET_PREFIX)}


def parse_assignments(pairs: list[str], option: str, *, as_json: bool) -> dict[str, Any]:
    """`k=v` pairs from the command line; with as_json, a value that parses as JSON keeps its type."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"{option} expects NAME=VALUE, got an argument without '='.",
                where=option,
                fix=f"Write {option} name=value.",
            )
        value: Any = raw
        if as_json:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        result[key] = value
    return result


def check_no_overlap(plain: Mapping[str, Any], secret: Mapping[str, Any]) -> None:
    both = sorted(set(plain) & set(secret))
    if both:
        raise ConfigError(
            f"Input {both[0]!r} is given both as a plain input and as a secret input.",
            where="the inputs file / --var and IAC_RUNNER_SECRET_* / --secret",
            fix="Give each input once: secrets only as secret inputs.",
        )


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
