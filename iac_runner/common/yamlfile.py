"""YAML the user wrote (iac-runner.yaml, Pulumi.yaml, resource definitions): a syntax error is reported at its
file:line, the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text


def error_at(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line of a YAML error (None when PyYAML gives none) and its reason, with its context."""
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or (str(exc).splitlines() or ["invalid YAML"])[0]
    context = getattr(exc, "context", None)
    return (mark.line + 1 if mark else None), reason + (f" ({context})" if context else "")


def load(path: Path, what: str, fix: str = "Fix the YAML syntax (indentation, quoting).") -> Any:
    """The YAML document in `path`; unreadable files and syntax errors are ConfigErrors at file:line."""
    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line, reason = error_at(exc)
        raise ConfigError(
            f"{path.name} is not valid YAML: {reason}.",
            where=f"{path}:{line}" if line else str(path),
            fix=fix,
        ) from None
