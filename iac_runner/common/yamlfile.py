"""YAML the user wrote (iac-runner.yaml, Pulumi.yaml, templates, resource definitions): a syntax error is reported at
its file:line, the same way everywhere.

PyYAML is imported at the first YAML read (an OpenTofu stack without iac-runner.yaml has none), and parses through
libyaml where PyYAML was built with it: ten times faster than its Python parser on a template.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text

if TYPE_CHECKING:
    import yaml


class YamlError(ValueError):
    """Text that is not YAML: the 1-based line where PyYAML says so (None when it gives none) and why."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def error_at(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line of a YAML error (None when PyYAML gives none) and its reason, with its context."""
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or (str(exc).splitlines() or ["invalid YAML"])[0]
    context = getattr(exc, "context", None)
    return (mark.line + 1 if mark else None), reason + (f" ({context})" if context else "")


def parse(text: str, *, tags: bool = True) -> Any:
    """The YAML document in `text`, with YAML's safe types only; raises YamlError. With `tags=False`, a local tag
    (CloudFormation's !Ref, !Sub) reads as None instead of failing."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader(tags))  # noqa: S506 - safe loaders only (_loader)
    except yaml.YAMLError as exc:
        raise YamlError(*error_at(exc)) from None


def load(path: Path, what: str, fix: str = "Fix the YAML syntax (indentation, quoting).") -> Any:
    """The YAML document in `path`; unreadable files and syntax errors are ConfigErrors at file:line."""
    text = read_text(path, what)
    try:
        return parse(text)
    except YamlError as exc:
        raise ConfigError(
            f"{path.name} is not valid YAML: {exc.reason}.",
            where=f"{path}:{exc.line}" if exc.line else str(path),
            fix=fix,
        ) from None


def dump(data: Any) -> str:
    """`data` as YAML, keys in their order."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


@functools.cache
def _loader(tags: bool) -> Any:
    import yaml

    safe = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if tags:
        return safe

    class NoTagLoader(safe):  # type: ignore[misc,valid-type]
        """Local tags (!Ref) as None."""

    NoTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return NoTagLoader
