"""A definition file as YAML documents that remember where each key is, so every problem is `file:line`.

A definition file is YAML, one or more documents. Loading keeps the line of every key and the node of every value;
the model's validation errors become problems at the line of the key they are about.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from iac_runner.common import yamlfile
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text
from iac_runner.humanitec.model import DRIVER_INPUTS, PLACEHOLDER_TAG, looks_secret

# -- loading with lines ----------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One finding, reported as `file:line: message` with how to fix it."""

    file: Path
    line: int
    message: str
    fix: str = ""

    def render(self) -> str:
        shown = shown_path(self.file)
        return f"{shown}:{self.line}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


@dataclass
class Document:
    """One YAML document of a definition file, with the line of every key and the node of every value."""

    file: Path
    data: Any
    start: int
    lines: dict[Loc, int] = field(default_factory=dict)
    nodes: dict[Loc, yaml.Node] = field(default_factory=dict)

    def line(self, loc: Sequence[Any]) -> int:
        """The line of the deepest key of `loc` that is in the file (the parent's when a key is missing)."""
        path = _clean(loc)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, self.start)

    def text_line(self, loc: Loc, inner: int) -> int:
        """The file line of line `inner` (1-based) of the string value at `loc` (a `files` entry, say)."""
        node = self.nodes.get(loc)
        if node is None:
            return self.line(loc)
        block = 1 if getattr(node, "style", None) in ("|", ">") else 0
        return node.start_mark.line + 1 + block + inner - 1

    def problem(self, loc: Sequence[Any], message: str, fix: str = "") -> Problem:
        return Problem(self.file, self.line(loc), message, fix)


def load_file(path: Path) -> tuple[list[Document], list[Problem]]:
    """The file's documents (empty ones skipped), or the problem that stops it from being read."""
    try:
        text = read_text(path, "definition file")
    except ConfigError as exc:
        return [], [Problem(path, 1, f"cannot be read: {exc.summary}", exc.fix)]
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        line, reason = yamlfile.error_at(exc)
        return [], [
            Problem(
                path,
                line or 1,
                f"is not valid YAML: {reason}",
                "Fix the YAML syntax at that line (indentation, a missing ':', unbalanced quotes or brackets).",
            )
        ]
    documents: list[Document] = []
    problems: list[Problem] = []
    for node, data in zip(nodes, datas, strict=True):
        if node is None or data is None:
            continue
        doc = Document(path, data, node.start_mark.line + 1)
        _walk(node, (), doc, problems)
        documents.append(doc)
    return documents, problems


def _walk(node: yaml.Node, loc: Loc, doc: Document, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        doc.file,
                        line,
                        f"duplicate key {_dotted((*loc, key))!r} (first at line {seen[key]}): YAML keeps only the last",
                        "Keep one of them.",
                    )
                )
            seen[key] = line
            doc.lines[(*loc, key)] = line
            doc.nodes[(*loc, key)] = value_node
            _walk(value_node, (*loc, key), doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines[(*loc, index)] = item.start_mark.line + 1
            doc.nodes[(*loc, index)] = item
            _walk(item, (*loc, index), doc, problems)


def is_definition(data: Any) -> bool:
    """Whether a YAML document is meant as a resource definition (other files in a GitOps repo are skipped)."""
    if not isinstance(data, dict):
        return False
    api = data.get("apiVersion")
    return (isinstance(api, str) and api.startswith("entity.humanitec.io")) or data.get("kind") == "Definition"


# -- the model's errors as problems ------------------------------------------------------------------------


def validation_message(msg: str) -> str:
    """pydantic's message for a validator's ValueError, without the "Value error, " it puts in front."""
    return msg.removeprefix("Value error, ")


def model_problems(doc: Document, error: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> list[Problem]:
    problems = []
    for err in error.errors():
        loc = (*prefix, *_clean(err["loc"]))
        where = _dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            known = known_fields(model, _clean(err["loc"])[:-1])
            what = "driver input" if loc[: len(DRIVER_INPUTS)] == DRIVER_INPUTS else "field"
            close = difflib.get_close_matches(key, known, n=1)
            message = f"unknown {what} {where!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            fix = f"Known here: {', '.join(known)}." if known else "Remove it."
        elif kind == "missing":
            message = f"{where} is missing"
            fix = "Add it; `iac-runner definition render` prints a complete definition."
        elif kind == "string_pattern_mismatch" and PLACEHOLDER_TAG in err["loc"]:
            message = f"{where} must be an object or a single ${{...}} placeholder, not {err['input']!r}"
            fix = "Write the object out, or reference another resource: ${resources['config.x'].outputs.y}."
        elif kind == "list_type":
            message = f"{where} has the wrong type: it must be a list (got {_type_name(err['input'])})"
            fix = "Write it as a YAML list: one item a line, each starting with '- ', or [a, b] on one line."
        elif kind in ("literal_error", "string_pattern_mismatch", "value_error", "string_too_long"):
            shown = "" if _secret_loc(loc) else f" (got {err['input']!r})"
            message = f"{where}: {validation_message(err['msg'])}{shown}"
            fix = "Correct the value."
        else:
            message = f"{where} has the wrong type: {validation_message(err['msg'])} (got {_type_name(err['input'])})"
            fix = "Give it the type shown; `iac-runner definition render` prints a complete definition."
        problems.append(doc.problem(loc, message, fix))
    return problems


def known_fields(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys the model accepts at `loc` (dict keys and list indexes of the path are passed through)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    models = _models(current)
    return [info.alias or name for m in models for name, info in m.model_fields.items()]


def _step(annotation: Any, part: str | int) -> Any:
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        origin = typing.get_origin(candidate)
        if origin in (dict, Mapping) and isinstance(part, str):
            return typing.get_args(candidate)[1]
        if origin in (list, Sequence) and isinstance(part, int):
            return typing.get_args(candidate)[0]
    return None


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(annotation) for leaf in _flatten(arg)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [c for c in _flatten(annotation) if isinstance(c, type) and issubclass(c, BaseModel)]


def _secret_loc(loc: Loc) -> bool:
    """Whether a value at `loc` may be a secret, and so is never echoed in a message."""
    return "secret_refs" in loc or any(isinstance(p, str) and looks_secret(p) for p in loc)


def _clean(loc: Sequence[Any]) -> Loc:
    return tuple(p for p in loc if not (isinstance(p, str) and (p.startswith("{") or p == "[key]")))


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "(top)"


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "nothing" if value is None else type(value).__name__)


def shown_path(path: Path) -> str:
    """The path relative to the working directory when it is below it, as a person would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
