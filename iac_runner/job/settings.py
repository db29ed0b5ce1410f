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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from iac_runner.backends.base import StackFile
from iac_runner.common import yamlfile
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text
from iac_runner.job.source import GitSource

ENV_PREFIX = "IAC_RUNNER_"
SECRET_PREFIX = f"{ENV_PREFIX}SECRET_"
STACK_FILE = "iac-runner.yaml"
DEFAULT_TIMEOUT = 3600

# Fields whose values are never echoed back in an error message.
_SECRET_FIELDS = {"source_token", "source_ssh_key"}


class Settings(BaseModel):
    """Everything a run can be told through `IAC_RUNNER_*` variables or the matching CLI flags.

    Env vars are read by `load_settings` (not by pydantic-settings' own env source) so that unknown
    `IAC_RUNNER_*` names are reported and tests can pass an environment explicitly.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str | None = None
    source_url: str | None = None
    source_ref: str | None = None
    source_path: str | None = None
    source_token: SecretStr | None = None
    source_username: str | None = None
    source_ssh_key: SecretStr | None = None
    source_known_hosts: str | None = None
    stack_name: str | None = None
    state_url: str | None = None
    timeout: int = Field(default=DEFAULT_TIMEOUT, gt=0)
    lock_timeout: int = Field(default=60, ge=0)
    tofu_binary: str | None = None
    log_format: Literal["text", "json"] = "text"

    def git_source(self) -> GitSource | None:
        """Where to check the stack out from, when it does not come from SCRIPTS_DIRECTORY."""
        if not self.source_url:
            return None
        return GitSource(
            url=self.source_url,
            ref=self.source_ref,
            path=self.source_path,
            token=self.source_token.get_secret_value() if self.source_token else None,
            username=self.source_username,
            ssh_key=self.source_ssh_key.get_secret_value() if self.source_ssh_key else None,
            known_hosts=self.source_known_hosts,
        )

    @field_validator("backend", "source_url", "source_ref", "source_path", "stack_name", "state_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("state_url")
    @classmethod
    def _state_url_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if re.match(r"^file:///", value) or re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", value):
            return value
        raise ValueError("must be file:///absolute/dir or s3://bucket[/prefix]")

    @field_validator("source_url")
    @classmethod
    def _source_url_form(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if re.match(r"^(https?|ssh|file)://", value) or re.match(r"^[\w.\-]+@[\w.\-]+:", value):
            return value
        raise ValueError("must be an https://, ssh://, git@host:path or file:// git URL")


def validation_message(msg: str) -> str:
    """pydantic's message for a validator's ValueError, without the "Value error, " it puts in front."""
    return msg.removeprefix("Value error, ")


def env_var(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from CLI flags (those not None) over `IAC_RUNNER_*` env vars."""
    environ = os.environ if environ is None else environ
    _reject_unknown_env(environ)
    env_values = {name: environ[env_var(name)] for name in Settings.model_fields if env_var(name) in environ}
    explicit = {k: v for k, v in flags.items() if v is not None}
    try:
        # Values are passed explicitly (flags over env) so that tests and the CLI share one path.
        return Settings.model_validate({**env_values, **explicit})
    except ValidationError as exc:
        raise _settings_error(exc, explicit) from None


def _reject_unknown_env(environ: Mapping[str, str]) -> None:
    known = {env_var(name) for name in Settings.model_fields}
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


def _settings_error(exc: ValidationError, explicit: Mapping[str, Any]) -> ConfigError:
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        source = f"flag {flag(field)}" if field in explicit else f"env var {env_var(field)}"
        shown = "" if field in _SECRET_FIELDS else f" (got {err.get('input')!r})"
        problems.append(f"{source}: {validation_message(err['msg'])}{shown}")
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
        return StackFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        known = ", ".join(StackFile.model_fields)
        if err["type"] == "extra_forbidden":
            summary = f"Unknown key {key!r} in {STACK_FILE}."
        else:
            summary = f"Invalid value for {key!r} in {STACK_FILE}: {validation_message(err['msg'])}."
        raise ConfigError(summary, where=_line_of_key(path, str(err["loc"][0])), fix=f"Known keys: {known}.") from None


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
