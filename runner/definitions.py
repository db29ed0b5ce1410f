"""Humanitec resource definitions for the Container Driver: the pydantic model, loading with lines, placeholders.

A definition file is YAML, one or more documents. Loading keeps the line of every key so that each problem the
checks find (`runner/gitops.py`) is reported as `file:line`. The model covers what the Container Driver reads
(`driver_inputs.values`: job, cluster, credentials_config, source, files; `driver_inputs.secret_refs`: cluster,
job.variables, source, files); anything else there is an unknown driver input, so a typo never passes silently.
Where the orchestrator allows a whole object to come from another resource (`job: ${resources[...].outputs.job}`),
the model takes a single `${...}` placeholder instead of the object.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, ValidationError
from pydantic import model_validator as _model_validator

API_VERSION = "entity.humanitec.io/v1b1"
CONTAINER_DRIVER = "humanitec/container"
DRIVER_INPUTS = ("entity", "driver_inputs")
PLACEHOLDER = re.compile(r"\$\{([^{}]+)\}")
_ESCAPED = "$\\{"  # how a definition writes a literal "${" that the orchestrator must leave alone

# Tags of the "object or placeholder" unions; they show up in pydantic's error locations and are dropped there.
_OBJECT, _PLACEHOLDER = "{object}", "{placeholder}"

Placeholder = Annotated[str, StringConstraints(pattern=r"^\$\{[^{}]+\}$")]

# Names that hold secrets by convention; a variable named like this under `values` is a secret in plain text.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|PASSPHRASE|PRIVATE_?KEY|API_?KEY|CREDENTIAL", re.IGNORECASE)
_NOT_SECRET = re.compile(r"_(FILE|PATH|URL|NAME|ID|ARN|PARAMETER|TTL|LENGTH)$", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def _object_or_placeholder(value: Any) -> str:
    return _PLACEHOLDER if isinstance(value, str) else _OBJECT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Strict):
    """A secret: a `value` (usually a placeholder of another resource's secret output) or a secret store entry."""

    value: str | None = None
    store: str | None = None
    ref: str | None = None
    version: str | None = None

    @_model_validator(mode="after")
    def _one_form(self) -> SecretRef:
        if self.value is not None and (self.store or self.ref):
            raise ValueError("give either `value`, or `store` and `ref`, not both")
        if self.value is None and not (self.store and self.ref):
            raise ValueError("needs `value` (e.g. a placeholder) or both `store` and `ref` (a secret store entry)")
        return self


class Job(_Strict):
    image: str
    command: list[str] | None = None
    shared_directory: str
    namespace: str | None = None
    service_account: str | None = None
    pod_template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)


class Source(_Strict):
    url: str
    ref: str | None = None
    path: str | None = None
    username: str | None = None


class CredentialsConfig(BaseModel):
    """How the driver account's credentials reach the job; its inner forms vary by cloud, so extra keys pass."""

    model_config = ConfigDict(extra="allow")

    environment: dict[str, str] = Field(default_factory=dict)
    file: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)


JobInput = Annotated[
    Annotated[Job, Tag(_OBJECT)] | Annotated[Placeholder, Tag(_PLACEHOLDER)],
    Discriminator(_object_or_placeholder),
]
ObjectInput = Annotated[
    Annotated[dict[str, Any], Tag(_OBJECT)] | Annotated[Placeholder, Tag(_PLACEHOLDER)],
    Discriminator(_object_or_placeholder),
]


class ContainerValues(_Strict):
    job: JobInput
    cluster: ObjectInput
    credentials_config: CredentialsConfig | None = None
    source: Source | None = None
    files: dict[str, str] = Field(default_factory=dict)
    skip_permission_checks: bool | None = None


class SecretJob(_Strict):
    variables: dict[str, SecretRef] = Field(default_factory=dict)


class SecretSource(_Strict):
    password: SecretRef | None = None
    ssh_key: SecretRef | None = None


class ContainerSecrets(_Strict):
    cluster: dict[str, SecretRef] = Field(default_factory=dict)
    job: SecretJob = Field(default_factory=SecretJob)
    source: SecretSource | None = None
    files: dict[str, SecretRef] = Field(default_factory=dict)


class ContainerInputs(_Strict):
    """`entity.driver_inputs` of a `humanitec/container` definition."""

    values: ContainerValues
    secret_refs: ContainerSecrets = Field(default_factory=ContainerSecrets)

    @property
    def job(self) -> Job | None:
        job = self.values.job
        return job if isinstance(job, Job) else None

    @property
    def variables(self) -> dict[str, str]:
        return self.job.variables if self.job else {}


class Criterion(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    app_id: str | None = None
    env_id: str | None = None
    env_type: str | None = None
    res_id: str | None = None
    klass: str | None = Field(default=None, alias="class")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", max_length=64)


class Entity(_Strict):
    name: str
    type: str
    driver_type: str
    driver_account: str | None = None
    driver_inputs: dict[str, Any] | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    provision: dict[str, Any] | None = None


class Definition(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["entity.humanitec.io/v1b1"] = Field(alias="apiVersion")
    kind: Literal["Definition"]
    metadata: Metadata
    entity: Entity


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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(path, 1, f"cannot be read: {exc}")]
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        return [], [
            Problem(
                path,
                mark.line + 1 if mark else 1,
                f"is not valid YAML: {reason}" + (f" ({context})" if context else ""),
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
            fix = "Add it; see templates/humanitec/ for a complete definition."
        elif kind == "string_pattern_mismatch" and _PLACEHOLDER in err["loc"]:
            message = f"{where} must be an object or a single ${{...}} placeholder, not {err['input']!r}"
            fix = "Write the object out, or reference another resource: ${resources['config.x'].outputs.y}."
        elif kind in ("literal_error", "string_pattern_mismatch", "value_error", "string_too_long"):
            shown = "" if _secret_loc(loc) else f" (got {err['input']!r})"
            message = f"{where}: {_message(err['msg'])}{shown}"
            fix = "Correct the value."
        else:
            message = f"{where} has the wrong type: {_message(err['msg'])} (got {_type_name(err['input'])})"
            fix = "Give it the type shown; see templates/humanitec/ for a complete definition."
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


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "nothing" if value is None else type(value).__name__)


def shown_path(path: Path) -> str:
    """The path relative to the working directory when it is below it, as a person would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- placeholders ----------------------------------------------------------------------------------------


def placeholders(text: str) -> list[str]:
    """The expressions of the `${...}` placeholders in `text` (escaped `$\\{` ones are literal text)."""
    return PLACEHOLDER.findall(text)


def has_placeholder(text: str) -> bool:
    return bool(PLACEHOLDER.search(text))


def resolve(text: str, values: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with the placeholders `values` knows replaced and escapes undone, and the expressions left over."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression in values:
            return values[expression]
        missing.append(expression)
        return match.group(0)

    return PLACEHOLDER.sub(replace, text).replace(_ESCAPED, "${"), missing


def context_values(definition: Definition, overrides: Mapping[str, str]) -> dict[str, str]:
    """Values for the `${context.*}` placeholders of a local run: defaults of a demo app, then `overrides`.

    The resource's unique id (`context.res.guresid`) is a digest of the others, as the orchestrator's is: the
    same definition and context always give the same id, so create and destroy find the same stack.
    """
    values = {
        "context.org.id": "local",
        "context.app.id": "demo-app",
        "context.env.id": "development",
        "context.env.type": "development",
        "context.res.type": definition.entity.type,
        "context.res.class": "default",
        "context.res.id": f"shared.{definition.metadata.id}",
    }
    values.update(overrides)
    if "context.res.guresid" not in overrides:
        parts = [values[f"context.{k}"] for k in ("org.id", "app.id", "env.id", "res.type", "res.class", "res.id")]
        values["context.res.guresid"] = hashlib.sha1("/".join(parts).encode(), usedforsecurity=False).hexdigest()
    return values
