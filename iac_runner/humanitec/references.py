"""Resource references (`${resources['config.runner'].outputs.job}`) resolved as the orchestrator resolves them:
the referenced resource's definition chosen among the definitions at hand by its matching criteria, then the
output read from it.

A reference is `resources['TYPE[.CLASS][#ID]'].outputs.PATH` (or `resources.TYPE[#ID].outputs.PATH`): CLASS is
`default` when not given, ID the referencing resource's own id. A definition of that type matches when one of its
criteria has every part it sets equal to the referenced resource's context (class, app, env, env type, resource
id); a definition without criteria is never chosen; among matches the most specific criterion wins
(`Criterion.specificity`). Only `humanitec/echo` definitions (the `config` pattern of the orchestrator's examples)
have outputs without running a driver: their `values`, and their `secret_refs` that hold a `value`. Placeholders
inside an output are resolved in the referenced resource's own context, as the orchestrator does before its
driver runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY
from iac_runner.humanitec.document import Document, Loc, is_definition, load_file, model_problems, shown_path
from iac_runner.humanitec.model import (
    DRIVER_INPUTS,
    ECHO_DRIVER,
    PLACEHOLDER,
    Definition,
    guresid,
    placeholders,
    resolve,
)

_REFERENCE = re.compile(
    r"""^resources\s*(?:\[\s*(?P<quote>['"])(?P<key>[^'"]+)(?P=quote)\s*\]|\.(?P<bare>[\w-]+(?:\#[\w-]+)?))"""
    r"""\s*\.outputs(?P<path>.*)$"""
)
_STEP = re.compile(r"""\.(?P<name>[\w-]+)|\[\s*(?:(?P<quote>['"])(?P<key>[^'"]*)(?P=quote)|(?P<index>\d+))\s*\]""")
_FIX = (
    "Put the definition it reads beside this one (or pass it with --config FILE), or emulate in the context its "
    "criteria name (--placeholder context.env.type=..., context.app.id=...)."
)


class Unresolvable(Exception):
    """Why a reference has no value here, and what the user can do about it."""

    def __init__(self, reason: str, fix: str = _FIX) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class _Loop(Unresolvable):
    """References that come back to where they started: the orchestrator refuses such a graph."""


@dataclass(frozen=True)
class Reference:
    expression: str
    type: str
    klass: str
    res_id: str
    path: tuple[str | int, ...]

    @property
    def shown(self) -> str:
        return f"resources['{self.type}.{self.klass}#{self.res_id}']"


@dataclass(frozen=True)
class Candidate:
    """A definition at hand that a reference may choose."""

    doc: Document
    definition: Definition

    @property
    def name(self) -> str:
        return f"{self.definition.metadata.id} ({shown_path(self.doc.file)}:{self.doc.line(('metadata', 'id'))})"


@dataclass(frozen=True)
class Output:
    """A referenced resource's output, and where its definition gives it."""

    value: Any
    doc: Document
    loc: Loc
    secret: bool


def is_reference(expression: str) -> bool:
    return expression.strip().startswith("resources")


def parse(expression: str, own_res_id: str) -> Reference:
    match = _REFERENCE.match(expression.strip())
    if match is None:
        raise Unresolvable(
            f"${{{expression}}} is not a reference of the form resources['TYPE.CLASS#ID'].outputs.NAME",
            "Write the reference as the orchestrator reads it, e.g. ${resources['config.runner'].outputs.job}.",
        )
    head, _, ident = (match["key"] or match["bare"]).partition("#")
    kind, _, klass = head.partition(".")
    path: list[str | int] = []
    rest = match["path"]
    while rest:
        step = _STEP.match(rest)
        if step is None:
            raise Unresolvable(f"the output path {match['path']!r} of ${{{expression}}} cannot be read")
        path.append(int(step["index"]) if step["index"] else (step["name"] or step["key"]))
        rest = rest[step.end() :]
    return Reference(expression, kind, klass or "default", ident or own_res_id, tuple(path))


def references_in(data: Any) -> set[str]:
    """The reference expressions of every placeholder in the strings of `data`."""
    return {expression for text in _strings(data) for expression in placeholders(text) if is_reference(expression)}


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


# -- the definitions at hand ------------------------------------------------------------------------------


def candidates(files: Sequence[Path], *, strict: bool) -> list[Candidate]:
    """The resource definitions of `files`. `strict` (files the user named): a problem stops the run; otherwise a
    file or document that does not hold a valid definition is skipped, with a word in the log."""
    found: list[Candidate] = []
    for path in files:
        if strict and not path.is_file():
            raise ConfigError(f"--config {path} is not a file.", where="--config", fix="Give a YAML file of them.")
        documents, problems = load_file(path)
        for doc in documents:
            if not is_definition(doc.data):
                continue
            try:
                found.append(Candidate(doc, Definition.model_validate(doc.data)))
            except ValidationError as exc:
                problems += model_problems(doc, exc, Definition)
        if problems and strict:
            raise ConfigError(
                f"--config {path} has {len(problems)} problem(s).",
                where=problems[0].render().split(": ", 1)[0],
                fix="Correct them; `iac-runner definition validate` shows each with its line.",
                details="\n".join(p.render() for p in problems[:10]),
            )
        if problems:
            log.info(f"{shown_path(path)}: skipped for resource references ({problems[0].render().splitlines()[0]})")
    return found


def folder_files(definition: Path) -> list[Path]:
    """The YAML files beside a definition (the folder a GitOps repository keeps its definitions in)."""
    return sorted(p for p in definition.parent.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


# -- resolving ---------------------------------------------------------------------------------------------


class Resolver:
    """Resolves references made from a resource whose context is `context` (the `context.*` placeholder values,
    plus any `--placeholder` overrides)."""

    def __init__(
        self, found: Sequence[Candidate], context: Mapping[str, str], searched: str, chain: tuple[str, ...] = ()
    ) -> None:
        self.found = found
        self.context = context
        self.searched = searched
        self.chain = chain

    def output(self, expression: str) -> Output:
        """The output a reference names; raises Unresolvable."""
        ref = parse(expression, self.context["context.res.id"])
        chosen = self._choose(ref)
        out = self._read(chosen, ref)
        return Output(self._inner(chosen, ref).expand(out.value), out.doc, out.loc, out.secret)

    def strings(self, data: Any) -> tuple[dict[str, str], dict[str, Unresolvable]]:
        """Every reference in the strings of `data`: its value as the text that replaces the placeholder, or why
        it has none here."""
        values: dict[str, str] = {}
        unresolved: dict[str, Unresolvable] = {}
        for expression in sorted(references_in(data)):
            try:
                out = self.output(expression)
            except Unresolvable as exc:
                unresolved[expression] = exc
                continue
            values[expression] = out.value if isinstance(out.value, str) else json.dumps(out.value)
            if out.secret:
                REGISTRY.add(values[expression])
        return values, unresolved

    def _wanted(self, ref: Reference) -> dict[str, str]:
        return {
            "app_id": self.context["context.app.id"],
            "env_id": self.context["context.env.id"],
            "env_type": self.context["context.env.type"],
            "res_id": ref.res_id,
            "class": ref.klass,
        }

    def _choose(self, ref: Reference) -> Candidate:
        wanted = self._wanted(ref)
        of_type = [c for c in self.found if c.definition.entity.type == ref.type]
        matches = [
            (criterion.specificity(), index, c)
            for index, c in enumerate(of_type)
            for criterion in c.definition.entity.criteria
            if criterion.mismatch(wanted) is None
        ]
        if not matches:
            asked = ", ".join(f"{k} {v!r}" for k, v in wanted.items())
            why = [f"{c.name}: {_why_not(c, wanted)}" for c in of_type]
            raise Unresolvable(
                f"no {ref.type!r} definition {self.searched} matches {ref.shown} ({asked})"
                + (f"; {'; '.join(why)}" if why else "")
            )
        best = max(rank for rank, _, _ in matches)
        chosen = {index: c for rank, index, c in matches if rank == best}
        if len(chosen) > 1:
            names = ", ".join(c.name for c in chosen.values())
            raise Unresolvable(
                f"{ref.shown} matches {len(chosen)} definitions equally well: {names}",
                "Make one criterion more specific: the orchestrator refuses criteria that tie.",
            )
        return next(iter(chosen.values()))

    def _read(self, chosen: Candidate, ref: Reference) -> Output:
        entity = chosen.definition.entity
        if entity.driver_type != ECHO_DRIVER:
            raise Unresolvable(
                f"{ref.shown} is {chosen.name}, of driver {entity.driver_type}: its outputs exist only once the "
                f"orchestrator has run it (emulate reads the outputs of {ECHO_DRIVER} definitions)",
                f'Give the value here: --placeholder "{ref.expression}=VALUE".',
            )
        inputs = entity.driver_inputs or {}
        values = inputs.get("values") if isinstance(inputs.get("values"), dict) else {}
        secrets = inputs.get("secret_refs") if isinstance(inputs.get("secret_refs"), dict) else {}
        assert isinstance(values, dict) and isinstance(secrets, dict)
        if not ref.path:
            return Output(values, chosen.doc, (*DRIVER_INPUTS, "values"), False)
        first = ref.path[0]
        if first in values:
            value: Any = values[first]
            loc: Loc = (*DRIVER_INPUTS, "values", str(first))
            secret = False
        elif first in secrets and isinstance(secrets[first], dict) and isinstance(secrets[first].get("value"), str):
            value, loc, secret = secrets[first]["value"], (*DRIVER_INPUTS, "secret_refs", str(first), "value"), True
        elif first in secrets:
            raise Unresolvable(
                f"output {first!r} of {chosen.name} is a secret read from a secret store when the orchestrator deploys",
                "Give the secret that uses it to emulate: --secret NAME=VALUE or the environment variable NAME.",
            )
        else:
            known = ", ".join(sorted(map(str, [*values, *secrets]))) or "none"
            raise Unresolvable(f"{chosen.name} has no output {first!r} (its outputs: {known})")
        for step in ref.path[1:]:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                raise Unresolvable(f"output {first!r} of {chosen.name} has no {step!r}") from None
            loc = (*loc, step)
        return Output(value, chosen.doc, loc, secret)

    def _inner(self, chosen: Candidate, ref: Reference) -> _Expander:
        """The referenced resource's own context, for the placeholders inside its outputs."""
        # A resource is its type, class and id: one definition may well serve two resources.
        ident = ref.shown
        if ident in self.chain:
            raise _Loop(
                f"the references form a loop: {' -> '.join((*self.chain, ident))}",
                "Break the loop: a definition's outputs cannot depend on themselves.",
            )
        context = {k: v for k, v in self.context.items() if not k.startswith("context.res.")}
        context.update({"context.res.type": ref.type, "context.res.class": ref.klass, "context.res.id": ref.res_id})
        context["context.res.guresid"] = guresid(context)
        return _Expander(Resolver(self.found, context, self.searched, (*self.chain, ident)))


def _why_not(candidate: Candidate, wanted: Mapping[str, str]) -> str:
    criteria = candidate.definition.entity.criteria
    if not criteria:
        return "it has no criteria, so the orchestrator never chooses it"
    return " / ".join(criterion.mismatch(wanted) or "" for criterion in criteria)


@dataclass(frozen=True)
class _Expander:
    resolver: Resolver

    def expand(self, value: Any) -> Any:
        """`value` with its placeholders resolved where they can be (the rest stay for the user to see where the
        value is used); a string that is one reference to an object becomes that object."""
        if isinstance(value, dict):
            return {k: self.expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole and is_reference(whole.group(1)):
            return self._output(whole.group(1), value)
        refs = {}
        for expression in references_in(value):
            out = self._output(expression, None)
            if out is not None:
                refs[expression] = out if isinstance(out, str) else json.dumps(out)
        text, _ = resolve(value, {**refs, **self.resolver.context}, unescape=False)
        return text

    def _output(self, expression: str, otherwise: Any) -> Any:
        """A reference's value; `otherwise` when it has none here (a loop is not tolerated)."""
        try:
            out = self.resolver.output(expression)
        except _Loop:
            raise
        except Unresolvable:
            return otherwise
        if out.secret:
            REGISTRY.add(out.value if isinstance(out.value, str) else json.dumps(out.value))
        return out.value
