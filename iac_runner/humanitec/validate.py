"""`iac-runner definition validate DIR`: every resource definition of a GitOps folder checked, each problem as
`file:line`.

Static checks need nothing but the file (`definition render` runs them on what it prints): the model, the
runner's settings in `job.variables`, secrets passed as plain values, the inputs file. Source checks then do what
the driver and the runner will do: check the definition's `source` out with job/source.py (a shallow
sparse fetch), lay SCRIPTS_DIRECTORY out as the driver does (humanitec/layout.py), find the stack of the declared
backend there and compare the inputs with what the stack declares.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from iac_runner import backends
from iac_runner.backends.base import Backend, StackFile
from iac_runner.common import paths, typed
from iac_runner.common.errors import ConfigError, RunnerError
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.humanitec import layout
from iac_runner.humanitec.document import (
    Document,
    Loc,
    Problem,
    is_definition,
    load_file,
    model_problems,
    shown_path,
)
from iac_runner.humanitec.model import (
    CONTAINER_DRIVER,
    DRIVER_INPUTS,
    ContainerInputs,
    Definition,
    DriverSource,
    has_placeholder,
    looks_secret,
)
from iac_runner.job.settings import (
    ENV_PREFIX,
    SECRET_PREFIX,
    SETTING_NAMES,
    env_var,
    load_stack_file,
    parse_settings,
)
from iac_runner.job.source import SourceError, git_auth, stack_folder

VALUES = (*DRIVER_INPUTS, "values")
SECRETS = (*DRIVER_INPUTS, "secret_refs")
VARIABLES = (*VALUES, "job", "variables")
SECRET_VARIABLES = (*SECRETS, "job", "variables")
# Set by the driver for every run; a definition cannot choose them.
DRIVER_VARIABLES = ("ACTION", "SCRIPTS_DIRECTORY", "OUTPUTS_FILE", "SECRET_OUTPUTS_FILE", "ERROR_FILE")
SETTINGS = {env_var(name): name for name in SETTING_NAMES}
# A placeholder where a JSON value goes (`"principals": ${resources...outputs.list}`): the orchestrator puts JSON there.
_BARE_PLACEHOLDER = re.compile(r"(?<=[:\[,])(\s*)\$\{[^{}]+\}")
_PLAIN_VALUE_FIX = (
    "Move it under driver_inputs.secret_refs ({where}) as `store`/`ref` of your secret store, or as "
    "`value: ${{resources...outputs...}}` of another resource's secret output: values are stored and shown as "
    "plain text."
)


@dataclass
class Checked:
    """One definition after the static checks: the models when they hold, and every problem found."""

    doc: Document
    definition: Definition | None = None
    inputs: ContainerInputs | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    #: source.url -> the URL to check out instead (a local mirror, a fork).
    url_map: Mapping[str, str] = field(default_factory=dict)
    #: Values for the definitions' source secrets: `source.password` / `source.ssh_key`.
    secrets: Mapping[str, str] = field(default_factory=dict)
    offline: bool = False


@dataclass
class Report:
    files: int = 0
    definitions: int = 0
    problems: list[Problem] = field(default_factory=list)


# -- the whole folder ------------------------------------------------------------------------------------


def validate(root: Path, options: Options) -> Report:
    files = _definition_files(root)
    report = Report(files=len(files))
    ids: dict[str, str] = {}
    for path in files:
        documents, problems = load_file(path)
        report.problems.extend(problems)
        for doc in documents:
            if not is_definition(doc.data):
                log.info(f"{path}: skipped a document that is not a resource definition")
                continue
            report.definitions += 1
            checked = check_static(doc)
            if checked.definition is not None:
                ident = checked.definition.metadata.id
                here = f"{shown_path(doc.file)}:{doc.line(('metadata', 'id'))}"
                if ident in ids:
                    checked.problems.append(
                        doc.problem(
                            ("metadata", "id"),
                            f"metadata.id {ident!r} is already used at {ids[ident]}",
                            "Give every definition its own id: the orchestrator keeps one definition per id.",
                        )
                    )
                ids.setdefault(ident, here)
            if checked.inputs is not None and not options.offline:
                try:
                    checked.problems.extend(check_source(checked, options))
                except RunnerError as exc:  # git missing, the time limit: the check itself could not run
                    where = (*VALUES, "source") if checked.inputs.values.source else VARIABLES
                    checked.problems.append(
                        doc.problem(where, f"the source could not be checked: {exc.summary}", exc.fix)
                    )
            report.problems.extend(checked.problems)
    return report


def _definition_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(
            f"{root} is neither a folder nor a file.",
            where="definition validate DIR",
            fix="Give the GitOps folder that holds the resource definitions (YAML files).",
        )
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# -- static checks ---------------------------------------------------------------------------------------


def check_static(doc: Document) -> Checked:
    checked = Checked(doc)
    try:
        checked.definition = Definition.model_validate(doc.data)
    except ValidationError as exc:
        checked.problems.extend(model_problems(doc, exc, Definition))
        return checked
    entity = checked.definition.entity
    if entity.driver_type != CONTAINER_DRIVER:
        return checked
    raw = copy.deepcopy(entity.driver_inputs or {})
    checked.problems.extend(_plain_source_secrets(doc, raw))
    try:
        checked.inputs = ContainerInputs.model_validate(raw)
    except ValidationError as exc:
        checked.problems.extend(model_problems(doc, exc, ContainerInputs, DRIVER_INPUTS))
        return checked
    checked.problems.extend(_check_container(doc, checked.inputs))
    return checked


def _plain_source_secrets(doc: Document, raw: dict[str, Any]) -> list[Problem]:
    """`source.password` / `source.ssh_key` under values: taken out (so the model does not call them unknown)."""
    source = raw.get("values", {}).get("source") if isinstance(raw.get("values"), dict) else None
    if not isinstance(source, dict):
        return []
    problems = []
    for key in ("password", "ssh_key", "token"):
        if key in source:
            source.pop(key)
            problems.append(
                doc.problem(
                    (*VALUES, "source", key),
                    f"source.{key} is a secret passed as a plain value",
                    _PLAIN_VALUE_FIX.format(where=f"secret_refs.source.{'password' if key == 'token' else key}"),
                )
            )
    return problems


def _check_container(doc: Document, inputs: ContainerInputs) -> list[Problem]:
    problems: list[Problem] = []
    variables = inputs.variables
    secret_variables = inputs.secret_refs.job.variables
    for name in variables:
        loc = (*VARIABLES, name)
        if looks_secret(name):
            problems.append(
                doc.problem(
                    loc,
                    f"job variable {name} is a secret passed as a plain value",
                    _PLAIN_VALUE_FIX.format(where=f"secret_refs.job.variables.{name}"),
                )
            )
        if name in secret_variables:
            problems.append(
                doc.problem(loc, f"job variable {name} is set both under values and under secret_refs", "Keep one.")
            )
    named = [(n, (*VARIABLES, n)) for n in variables] + [(n, (*SECRET_VARIABLES, n)) for n in secret_variables]
    for name, loc in named:
        if name in DRIVER_VARIABLES:
            problems.append(
                doc.problem(
                    loc, f"job variable {name} is set by the Container Driver itself", "Remove it from the definition."
                )
            )
        elif name.startswith(ENV_PREFIX) and not name.startswith(SECRET_PREFIX) and name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            problems.append(
                doc.problem(
                    loc,
                    f"job variable {name} is not a setting of iac-runner"
                    + (f" (did you mean {close[0]}?)" if close else ""),
                    f"The runner stops on unknown IAC_RUNNER_* variables. Settings: {', '.join(sorted(SETTINGS))}; "
                    f"and {SECRET_PREFIX}<NAME> for secret inputs.",
                )
            )
    problems.extend(_check_settings(doc, variables))
    problems.extend(_check_files(doc, inputs))
    problems.extend(_check_source_form(doc, inputs))
    backend = variables.get("IAC_RUNNER_BACKEND")
    if backend in backends.names():
        secret_inputs = any(n.startswith(SECRET_PREFIX) for n in secret_variables)
        for name, what in backends.get(backend).secret_env(secret_inputs).items():
            if name not in secret_variables:
                problems.append(
                    doc.problem(
                        SECRET_VARIABLES,
                        f"the {backend} stack needs {name} ({what}), which the definition does not give",
                        f"Add secret_refs.job.variables.{name} (from your secret store; the same value for every run).",
                    )
                )
    return problems


def _check_settings(doc: Document, variables: Mapping[str, str]) -> list[Problem]:
    given = {
        SETTINGS[name]: value for name, value in variables.items() if name in SETTINGS and not has_placeholder(value)
    }
    problems = []
    try:
        parse_settings(given)
    except typed.Invalid as exc:
        for problem in exc.problems:
            name = env_var(problem.field)
            problems.append(
                doc.problem(
                    (*VARIABLES, name),
                    f"job variable {name}: {problem.message} (got {problem.value!r})",
                    "Correct the value; the settings are listed in README.md.",
                )
            )
    backend = given.get("backend")
    if backend and backend not in backends.names():
        problems.append(
            doc.problem(
                (*VARIABLES, "IAC_RUNNER_BACKEND"),
                f"job variable IAC_RUNNER_BACKEND names an unknown backend {backend!r}",
                f"Use one of: {', '.join(backends.names())}.",
            )
        )
    return problems


def _check_files(doc: Document, inputs: ContainerInputs) -> list[Problem]:
    problems = []
    files = inputs.values.files
    for name, text in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            problems.append(
                doc.problem(
                    (*VALUES, "files", name),
                    f"files entry {name!r} leaves the shared directory",
                    "Use a path relative to the job's shared directory, without '..'.",
                )
            )
        if "PRIVATE KEY-----" in text:
            problems.append(
                doc.problem(
                    (*VALUES, "files", name),
                    f"files entry {name!r} holds a private key in plain text",
                    _PLAIN_VALUE_FIX.format(where=f"secret_refs.files.{name}"),
                )
            )
    inputs_file = inputs.variables.get("RESOURCE_INPUTS_FILE")
    if inputs_file is None or has_placeholder(inputs_file) or PurePosixPath(inputs_file).is_absolute():
        return problems
    name = inputs_file
    key = str(PurePosixPath(name))
    if key not in {str(PurePosixPath(n)) for n in files} and key not in inputs.secret_refs.files:
        problems.append(
            doc.problem(
                (*VARIABLES, "RESOURCE_INPUTS_FILE"),
                f"RESOURCE_INPUTS_FILE names {name!r}, which no `files` entry writes",
                f"Add driver_inputs.values.files.{name} with the stack's inputs (a JSON object), or drop the variable.",
            )
        )
        return problems
    loc = (*VALUES, "files", next(n for n in files if str(PurePosixPath(n)) == key))
    text = files.get(loc[-1], "")
    data, error, line = parse_inputs(text)
    if error is not None:
        problems.append(
            Problem(
                doc.file,
                doc.text_line(loc, line),
                f"the inputs file {name} is not valid JSON: {error}",
                "Write one JSON object; a placeholder inside a string stays in quotes.",
            )
        )
    elif not isinstance(data, dict):
        problems.append(
            doc.problem(loc, f"the inputs file {name} must hold a JSON object", 'Write {"name": value, ...}.')
        )
    return problems


def _check_source_form(doc: Document, inputs: ContainerInputs) -> list[Problem]:
    source = inputs.values.source
    if source is None:
        return []
    problems = []
    if not has_placeholder(source.url):
        try:
            parse_settings({"source_url": source.url})
        except typed.Invalid as exc:
            problems.append(
                doc.problem(
                    (*VALUES, "source", "url"),
                    f"source.url: {exc.problems[0].message} (got {source.url!r})",
                    "Give the repository's git URL.",
                )
            )
            return problems
    secrets = inputs.secret_refs.source
    auth = git_auth(source.url)
    if secrets and secrets.password and auth != "token" and not has_placeholder(source.url):
        problems.append(
            doc.problem(
                (*SECRETS, "source", "password"),
                "secret_refs.source.password is a token for an https:// URL, but source.url is not one",
                "Use the repository's https:// URL with a token, or secret_refs.source.ssh_key for ssh.",
            )
        )
    if secrets and secrets.ssh_key and auth == "token":
        problems.append(
            doc.problem(
                (*SECRETS, "source", "ssh_key"),
                "secret_refs.source.ssh_key is an SSH key, but source.url is an https:// URL",
                "Use the repository's ssh URL (git@host:org/repo.git) with a key, or a token as source.password.",
            )
        )
    return problems


def parse_inputs(text: str) -> tuple[Any, str | None, int]:
    """The inputs file's JSON (placeholders where a value goes read as null); or the error and its line."""
    try:
        return json.loads(text), None, 1
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(_BARE_PLACEHOLDER.sub(r"\1null", text)), None, 1
    except json.JSONDecodeError as exc:
        return None, exc.msg, exc.lineno


# -- source checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a definition says where its stack is: the lines to blame for each part."""

    url: Loc
    ref: Loc
    path: Loc
    stack_path: Loc


def check_source(checked: Checked, options: Options) -> list[Problem]:
    """Check the source out as the driver would, lay out its shared directory, and look at the stack there."""
    doc, inputs = checked.doc, checked.inputs
    assert inputs is not None
    source, where = _source(inputs)
    stack_path = inputs.variables.get("IAC_RUNNER_SOURCE_PATH") if source is inputs.values.source else None
    given = [stack_path or ""] + ([source.url, source.ref or "", source.path or ""] if source else [])
    if inputs.job is None or any(has_placeholder(value) for value in given):
        log.info(f"{doc.file}: the job or the source is given by a placeholder: not checked out")
        return []
    log.step(f"checking {doc.file}" + (f" ({source.url} @ {source.ref or 'HEAD'})" if source else ""))
    with tempfile.TemporaryDirectory(prefix="iac-runner-validate-", dir=paths.temp_dir()) as tmp:
        scripts = Path(tmp) / "scripts"
        scripts.mkdir()
        try:
            if source is not None:
                layout.fetch_source(
                    source,
                    scripts,
                    url_map=options.url_map,
                    token=options.secrets.get("source.password") or os.environ.get("IAC_RUNNER_SOURCE_TOKEN"),
                    ssh_key=options.secrets.get("source.ssh_key") or os.environ.get("IAC_RUNNER_SOURCE_SSH_KEY"),
                    deadline=Deadline(300),
                )
        except SourceError as exc:
            loc = {"url": where.url, "ref": where.ref, "path": where.path}[exc.part]
            return [doc.problem(loc, f"source: {exc.summary}", _fix(exc))]
        try:
            layout.write_files(scripts, inputs.values.files)
        except ConfigError:
            return []  # a files entry that leaves the directory: reported by the static checks
        try:
            folder = stack_folder(scripts, stack_path, "scripts directory")
        except ConfigError as exc:
            return [doc.problem(where.stack_path, f"source: {exc.summary}", exc.fix)]
        return _check_stack(doc, inputs, folder, scripts, where)


def _source(inputs: ContainerInputs) -> tuple[DriverSource | None, _Where]:
    """The checkout the job gets: the driver's `source`, or the runner's own (IAC_RUNNER_SOURCE_URL)."""
    variables = inputs.variables
    if inputs.values.source is not None:
        base = (*VALUES, "source")
        return inputs.values.source, _Where(
            (*base, "url"), (*base, "ref"), (*base, "path"), (*VARIABLES, "IAC_RUNNER_SOURCE_PATH")
        )
    if "IAC_RUNNER_SOURCE_URL" in variables:
        runner_source = DriverSource(
            url=variables["IAC_RUNNER_SOURCE_URL"],
            ref=variables.get("IAC_RUNNER_SOURCE_REF"),
            path=variables.get("IAC_RUNNER_SOURCE_PATH"),
        )
        path = (*VARIABLES, "IAC_RUNNER_SOURCE_PATH")
        return runner_source, _Where(
            (*VARIABLES, "IAC_RUNNER_SOURCE_URL"), (*VARIABLES, "IAC_RUNNER_SOURCE_REF"), path, path
        )
    files = (*VALUES, "files")
    return None, _Where(files, files, files, (*VARIABLES, "IAC_RUNNER_SOURCE_PATH"))


def _fix(error: RunnerError) -> str:
    return error.fix + (f" ({error.details.splitlines()[-1].strip()})" if error.details.strip() else "")


def _check_stack(doc: Document, inputs: ContainerInputs, folder: Path, scripts: Path, where: _Where) -> list[Problem]:
    variables = inputs.variables
    try:
        stack_file = load_stack_file(folder)
    except ConfigError as exc:
        return [doc.problem(where.stack_path, f"the stack's {exc.summary}", exc.fix)]
    declared_backend = variables.get("IAC_RUNNER_BACKEND") or stack_file.backend
    shown = str(folder.relative_to(scripts)) if folder != scripts else "the shared directory's root"
    if declared_backend:
        if declared_backend not in backends.names():
            return []  # reported by the static checks
        backend = backends.get(declared_backend)
        if not backend.detect(folder):
            found = sorted(p.name for p in folder.iterdir())[:12]
            others = [b for b in backends.names() if b != declared_backend and backends.get(b).detect(folder)]
            loc = (*VARIABLES, "IAC_RUNNER_BACKEND") if "IAC_RUNNER_BACKEND" in variables else where.stack_path
            return [
                doc.problem(
                    loc,
                    f"{shown} holds no {declared_backend} stack"
                    + (
                        f" (it holds a stack of the {others[0]} backend)"
                        if others
                        else f" (it holds: {', '.join(found) or 'nothing'})"
                    ),
                    "Point IAC_RUNNER_SOURCE_PATH (and source.path) at the stack's folder, or correct "
                    "IAC_RUNNER_BACKEND.",
                )
            ]
    else:
        try:
            backend = backends.detect(folder)
        except ConfigError as exc:
            return [doc.problem(where.stack_path, f"{shown}: {exc.summary}", exc.fix)]
    placed = layout.place_companions(backend, scripts, folder)
    if placed:
        log.info(f"{doc.file}: {', '.join(placed)} from `files` join the stack in {shown}, as in the job")
    problems = []
    if backend.needs_state(folder) and not variables.get("IAC_RUNNER_STATE_URL"):
        problems.append(
            doc.problem(
                VARIABLES,
                f"IAC_RUNNER_STATE_URL is not set, and the {backend.name} stack keeps its state in the runner's hands",
                "Set job.variables.IAC_RUNNER_STATE_URL to s3://bucket/prefix (a placeholder of a config resource "
                "will do): state kept inside the Job dies with it.",
            )
        )
    problems.extend(_check_inputs(doc, inputs, backend, folder, stack_file))
    return problems


# -- inputs against what the stack declares ---------------------------------------------------------------


def _check_inputs(
    doc: Document, inputs: ContainerInputs, backend: Backend, folder: Path, stack_file: StackFile
) -> list[Problem]:
    declared, complete = backend.declared_inputs(folder, stack_file)
    if not declared and not complete:
        return []
    plain, plain_loc, plain_lines = _plain_inputs(doc, inputs)
    if plain is None:
        return []  # the inputs file is broken: reported by the static checks
    secret = {
        n.removeprefix(SECRET_PREFIX): (*SECRET_VARIABLES, n)
        for n in inputs.secret_refs.job.variables
        if n.startswith(SECRET_PREFIX)
    }
    listing = ", ".join(f"{n}{' (secret)' if d.secret else ''}" for n, d in sorted(declared.items())) or "none"
    problems = []

    def at(name: str) -> tuple[int, Loc]:
        return plain_lines.get(name, 0), plain_loc

    for name in plain:
        line, loc = at(name)
        if name not in declared:
            if complete:
                problems.append(
                    Problem(
                        doc.file,
                        doc.text_line(loc, line) if line else doc.line(loc),
                        f"input {name!r} is not declared by the {backend.name} stack",
                        f"The stack declares: {listing}.",
                    )
                )
        elif declared[name].secret:
            problems.append(
                Problem(
                    doc.file,
                    doc.text_line(loc, line) if line else doc.line(loc),
                    f"input {name!r} is a secret of the stack, passed as a plain value in the inputs file",
                    _PLAIN_VALUE_FIX.format(where=f"secret_refs.job.variables.{SECRET_PREFIX}{name}"),
                )
            )
    for name, loc in secret.items():
        if name not in declared and complete:
            problems.append(
                doc.problem(
                    loc,
                    f"secret input {name!r} is not declared by the {backend.name} stack",
                    f"Declared: {listing}.",
                )
            )
        elif name in declared and (problem := backend.secret_input_problem(name, declared[name])):
            problems.append(doc.problem(loc, *problem))
    job_env = {*inputs.variables, *inputs.secret_refs.job.variables}
    provided = set(plain) | set(secret) | backend.provided_inputs(folder, job_env)
    own_files = [n for n in inputs.values.files if any(fnmatch(PurePosixPath(n).name, p) for p in backend.companions)]
    # Without an inputs file, the stack's own files in `files` are where its inputs are given.
    missing_at = (*VALUES, "files", own_files[0]) if own_files and plain_loc == VARIABLES else plain_loc
    for name, decl in sorted(declared.items()):
        if decl.required and name not in provided:
            loc = missing_at if not decl.secret else SECRET_VARIABLES
            problems.append(
                doc.problem(
                    loc,
                    f"the {backend.name} stack requires input {name!r}, which the definition does not give",
                    _missing_input_fix(inputs, backend, name, decl.secret),
                )
            )
    return problems


def _missing_input_fix(inputs: ContainerInputs, backend: Backend, name: str, secret: bool) -> str:
    if secret:
        return f"Add secret_refs.job.variables.{SECRET_PREFIX}{name} (from your secret store)."
    inputs_file = inputs.variables.get("RESOURCE_INPUTS_FILE")
    own = " or in the stack's own variables file, written beside it by `files`" if backend.companions else ""
    if inputs_file:
        return f"Add it to the inputs file {inputs_file}{own}."
    return (
        "Give it a value: an inputs file (job.variables.RESOURCE_INPUTS_FILE and a `files` entry of that name "
        f"holding a JSON object){own}."
    )


def _plain_inputs(doc: Document, inputs: ContainerInputs) -> tuple[dict[str, Any] | None, Loc, dict[str, int]]:
    """The inputs file's inputs (None when it cannot be read), where it is, and the line of each in it."""
    name = inputs.variables.get("RESOURCE_INPUTS_FILE")
    files = inputs.values.files
    key = next((n for n in files if name and PurePosixPath(n) == PurePosixPath(name)), None)
    if key is None:
        return {}, VARIABLES, {}
    data, error, _ = parse_inputs(files[key])
    if error is not None or not isinstance(data, dict):
        return None, (*VALUES, "files", key), {}
    lines = {}
    for field_name in data:
        match = re.search(rf'"{re.escape(field_name)}"\s*:', files[key])
        if match:
            lines[field_name] = files[key][: match.start()].count("\n") + 1
    return data, (*VALUES, "files", key), lines
