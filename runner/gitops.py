"""`iac-runner definition validate DIR`: every resource definition of a GitOps folder checked, each problem as
`file:line`.

Static checks need nothing but the file (`definition render` runs them on what it prints): the model, the
runner's settings in `job.variables`, secrets passed as plain values, the inputs file. Source checks then do what
the driver and the runner will do: check the definition's `source` out with runner/source.py (ls-remote, shallow
sparse fetch), lay SCRIPTS_DIRECTORY out as the driver does (runner/emulate.py), find the stack of the declared
backend there and compare the inputs with what the stack declares.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

import backends
from runner import driver
from runner.definitions import (
    CONTAINER_DRIVER,
    DRIVER_INPUTS,
    ContainerInputs,
    Definition,
    Document,
    Loc,
    Problem,
    Source,
    has_placeholder,
    is_definition,
    load_file,
    looks_secret,
    model_problems,
    shown_path,
)
from runner.errors import ConfigError, RunnerError
from runner.log import log
from runner.process import Deadline
from runner.settings import ENV_PREFIX, SECRET_PREFIX, Settings, env_var, load_stack_file
from runner.source import stack_folder

VALUES = (*DRIVER_INPUTS, "values")
SECRETS = (*DRIVER_INPUTS, "secret_refs")
VARIABLES = (*VALUES, "job", "variables")
SECRET_VARIABLES = (*SECRETS, "job", "variables")
# Set by the driver for every run; a definition cannot choose them.
DRIVER_VARIABLES = ("ACTION", "SCRIPTS_DIRECTORY", "OUTPUTS_FILE", "SECRET_OUTPUTS_FILE", "ERROR_FILE")
SETTINGS = {env_var(name): name for name in Settings.model_fields}
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
    if variables.get("IAC_RUNNER_BACKEND") == "pulumi":
        secret_inputs = [n for n in secret_variables if n.startswith(SECRET_PREFIX)]
        if secret_inputs and "PULUMI_CONFIG_PASSPHRASE" not in secret_variables:
            problems.append(
                doc.problem(
                    SECRET_VARIABLES,
                    "the pulumi stack gets secret inputs but no PULUMI_CONFIG_PASSPHRASE to encrypt them",
                    "Add secret_refs.job.variables.PULUMI_CONFIG_PASSPHRASE (the same passphrase for every run).",
                )
            )
    return problems


def _check_settings(doc: Document, variables: Mapping[str, str]) -> list[Problem]:
    given = {
        SETTINGS[name]: value for name, value in variables.items() if name in SETTINGS and not has_placeholder(value)
    }
    problems = []
    try:
        Settings.model_validate(given)
    except ValidationError as exc:
        for err in exc.errors():
            name = env_var(str(err["loc"][0]))
            problems.append(
                doc.problem(
                    (*VARIABLES, name),
                    f"job variable {name}: {err['msg'].removeprefix('Value error, ')} (got {err['input']!r})",
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
            Settings.model_validate({"source_url": source.url})
        except ValidationError as exc:
            problems.append(
                doc.problem(
                    (*VALUES, "source", "url"),
                    f"source.url: {exc.errors()[0]['msg'].removeprefix('Value error, ')} (got {source.url!r})",
                    "Give the repository's git URL.",
                )
            )
            return problems
    secrets = inputs.secret_refs.source
    https = source.url.startswith(("https://", "http://"))
    if secrets and secrets.password and not https and not has_placeholder(source.url):
        problems.append(
            doc.problem(
                (*SECRETS, "source", "password"),
                "secret_refs.source.password is a token for an https:// URL, but source.url is not one",
                "Use the repository's https:// URL with a token, or secret_refs.source.ssh_key for ssh.",
            )
        )
    if secrets and secrets.ssh_key and https:
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
    with tempfile.TemporaryDirectory(prefix="iac-runner-validate-") as tmp:
        scripts = Path(tmp) / "scripts"
        scripts.mkdir()
        try:
            if source is not None:
                driver.fetch_source(
                    source,
                    scripts,
                    url_map=options.url_map,
                    token=options.secrets.get("source.password") or os.environ.get("IAC_RUNNER_SOURCE_TOKEN"),
                    ssh_key=options.secrets.get("source.ssh_key") or os.environ.get("IAC_RUNNER_SOURCE_SSH_KEY"),
                    deadline=Deadline(300),
                )
        except driver.SourceError as exc:
            loc = {"url": where.url, "ref": where.ref, "path": where.path}[exc.part]
            return [doc.problem(loc, f"source: {exc.summary}", _fix(exc))]
        try:
            driver.write_files(scripts, inputs.values.files)
        except ConfigError:
            return []  # a files entry that leaves the directory: reported by the static checks
        try:
            folder = stack_folder(scripts, stack_path, "scripts directory")
        except ConfigError as exc:
            return [doc.problem(where.stack_path, f"source: {exc.summary}", exc.fix)]
        return _check_stack(doc, inputs, folder, scripts, where)


def _source(inputs: ContainerInputs) -> tuple[Source | None, _Where]:
    """The checkout the job gets: the driver's `source`, or the runner's own (IAC_RUNNER_SOURCE_URL)."""
    variables = inputs.variables
    if inputs.values.source is not None:
        base = (*VALUES, "source")
        return inputs.values.source, _Where(
            (*base, "url"), (*base, "ref"), (*base, "path"), (*VARIABLES, "IAC_RUNNER_SOURCE_PATH")
        )
    if "IAC_RUNNER_SOURCE_URL" in variables:
        runner_source = Source(
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
    problems.extend(_check_inputs(doc, inputs, backend.name, folder, stack_file.template))
    return problems


# -- inputs against what the stack declares ---------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    required: bool
    secret: bool


def _check_inputs(
    doc: Document, inputs: ContainerInputs, backend: str, folder: Path, template: str | None
) -> list[Problem]:
    declared, complete = declared_inputs(backend, folder, template)
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
                        f"input {name!r} is not declared by the {backend} stack",
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
                    loc, f"secret input {name!r} is not declared by the {backend} stack", f"Declared: {listing}."
                )
            )
        elif backend == "cloudformation" and name in declared and not declared[name].secret:
            problems.append(
                doc.problem(
                    loc,
                    f"secret input {name!r} maps to a CloudFormation parameter without NoEcho: true",
                    "Add `NoEcho: true` to the parameter, or pass the input as a plain value.",
                )
            )
    provided = set(plain) | set(secret) | _provided_elsewhere(folder, inputs)
    for name, decl in sorted(declared.items()):
        if decl.required and name not in provided:
            loc = plain_loc if not decl.secret else SECRET_VARIABLES
            problems.append(
                doc.problem(
                    loc,
                    f"the {backend} stack requires input {name!r}, which the definition does not give",
                    f"Add it to the inputs file{' as a secret: ' + SECRET_PREFIX + name if decl.secret else ''}.",
                )
            )
    return problems


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


def _provided_elsewhere(folder: Path, inputs: ContainerInputs) -> set[str]:
    """Inputs the stack gets another way: TF_VAR_* variables, tfvars files beside the code."""
    names = {n.removeprefix("TF_VAR_") for n in (*inputs.variables, *inputs.secret_refs.job.variables)}
    for path in (*folder.glob("terraform.tfvars.json"), *folder.glob("*.auto.tfvars.json")):
        with contextlib.suppress(ValueError, OSError):
            names.update(json.loads(path.read_text()))
    for path in (*folder.glob("terraform.tfvars"), *folder.glob("*.auto.tfvars")):
        names.update(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*=", path.read_text(errors="replace"), re.MULTILINE))
    return names


def declared_inputs(backend: str, folder: Path, template: str | None = None) -> tuple[dict[str, Declared], bool]:
    """The stack's declared inputs (name -> required, secret), and whether the list is complete (a Pulumi program
    that reads config under computed names, or an unreadable file, makes it incomplete: unknown names then pass)."""
    if backend == "opentofu":
        return _tofu_variables(folder)
    if backend == "cloudformation":
        return _cfn_parameters(folder, template)
    if backend == "pulumi":
        return _pulumi_config(folder)
    return {}, False


def _tofu_variables(folder: Path) -> tuple[dict[str, Declared], bool]:
    import hcl2

    declared: dict[str, Declared] = {}
    complete = True
    for path in sorted((*folder.glob("*.tf"), *folder.glob("*.tofu"))):
        try:
            with path.open() as handle:
                blocks = hcl2.load(handle).get("variable", [])
        except Exception:  # a broken file is the engine's to report
            complete = False
            continue
        for block in blocks:
            for name, body in block.items():
                declared[name.strip('"')] = Declared("default" not in body, body.get("sensitive") is True)
    return declared, complete


class _NoTags(yaml.SafeLoader):
    """CloudFormation YAML with its intrinsic function tags (!Ref, !Sub) read as None."""


_NoTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _cfn_parameters(folder: Path, template: str | None) -> tuple[dict[str, Declared], bool]:
    from backends.cloudformation import find_template

    path = find_template(folder, template)
    if path is None or not path.is_file():
        return {}, False
    try:
        data = yaml.load(path.read_text(), Loader=_NoTags)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return {}, False
    parameters = data.get("Parameters") if isinstance(data, dict) else None
    declared = {
        name: Declared("Default" not in spec, str(spec.get("NoEcho", "")).lower() == "true")
        for name, spec in (parameters or {}).items()
        if isinstance(spec, dict)
    }
    return declared, True


_CONFIG_READ = re.compile(r"^(get|require)(_secret)?(_int|_bool|_float|_object)?$")


def _pulumi_config(folder: Path) -> tuple[dict[str, Declared], bool]:
    """Config the project declares in Pulumi.yaml, and the keys its Python program reads with pulumi.Config."""
    declared: dict[str, Declared] = {}
    project_name = ""
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        with contextlib.suppress(OSError, yaml.YAMLError):
            data = yaml.safe_load((folder / name).read_text())
            if isinstance(data, dict):
                project_name = str(data.get("name", ""))
                for key, given in (data.get("config") or {}).items():
                    spec = given if isinstance(given, dict) else {"default": given}
                    short = key.removeprefix(f"{project_name}:")
                    declared[short] = Declared("default" not in spec, bool(spec.get("secret")))
    complete = True
    found = False
    for path in _python_files(folder):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            complete = False
            continue
        reads, dynamic = _config_reads(tree, project_name)
        found = found or bool(reads)
        complete = complete and not dynamic
        for key, decl in reads.items():
            known = declared.get(key)
            declared[key] = Declared(decl.required or bool(known and known.required), decl.secret)
    return declared, complete and (found or bool(declared))


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        parts = set(path.relative_to(folder).parts)
        if not parts & {"venv", ".venv", "__pycache__", "node_modules"}:
            yield path


def _config_reads(tree: ast.AST, project: str) -> tuple[dict[str, Declared], bool]:
    """`config.require("x")` and friends, where `config = pulumi.Config(...)`; computed names make it dynamic."""
    namespaces: dict[str, str | None] = {}
    dynamic = False

    def namespace(call: ast.expr) -> tuple[bool, str | None]:
        if not isinstance(call, ast.Call):
            return False, None
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name != "Config":
            return False, None
        if not call.args:
            return True, None
        arg = call.args[0]
        return True, arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "?"

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            is_config, ns = namespace(node.value)
            if is_config:
                namespaces[node.targets[0].id] = ns
    reads: dict[str, Declared] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        match = _CONFIG_READ.match(node.func.attr)
        receiver = node.func.value
        if not match:
            continue
        if isinstance(receiver, ast.Name) and receiver.id in namespaces:
            ns = namespaces[receiver.id]
        else:
            is_config, ns = namespace(receiver)
            if not is_config:
                continue
        arg = node.args[0] if node.args else None
        if ns == "?" or not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            dynamic = True
            continue
        key = arg.value if ns in (None, project) else f"{ns}:{arg.value}"
        earlier = reads.get(key)
        required = match.group(1) == "require" or bool(earlier and earlier.required)
        reads[key] = Declared(required, bool(match.group(2)) or bool(earlier and earlier.secret))
    return reads, dynamic
