"""A Pulumi project as the runner reads it without running the engine: `Pulumi.yaml` (parsed once, checked with
a message for every way it can be wrong) and the config keys its Python program reads."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iac_runner.backends.base import Declared, InputSpec
from iac_runner.common import yamlfile
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.yml")
#: Runtime options the runner knows what to do with: it makes the virtualenv itself, with pip (what
#: `pulumi new python` writes today: `toolchain: pip` and `virtualenv: venv`).
RUNTIME_OPTIONS = {"virtualenv": None, "toolchain": "pip"}
_CONFIG_READ = re.compile(r"^(get|require)(_secret)?(_int|_bool|_float|_object)?$")
_TYPES = {"_int": "integer", "_bool": "boolean", "_float": "number", "_object": "object"}


def project_file(folder: Path) -> str | None:
    return next((n for n in PROJECT_FILES if (folder / n).is_file()), None)


@dataclass(frozen=True)
class Project:
    """What the runner needs of `Pulumi.yaml`."""

    path: Path
    name: str
    runtime: str
    options: Mapping[str, Any]
    backend_url: str | None
    #: The program's folder or file (`main:` in Pulumi.yaml), relative to the project folder.
    main: str | None = None
    #: The `config:` section: keys the project declares, with their defaults and secret flags.
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Project:
        path = folder / (project_file(folder) or PROJECT_FILES[0])
        data = yamlfile.load(path, path.name, fix="Fix the YAML syntax of the project file.")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or "runtime" not in data:
            raise ConfigError(
                f"{path.name} must be a mapping with at least `name` and `runtime`.",
                where=str(path),
                fix="Write e.g. `name: my-project` and `runtime: python`.",
            )
        runtime = data["runtime"]
        options: Any
        if isinstance(runtime, str):
            name, options = runtime, {}
        elif isinstance(runtime, dict) and isinstance(runtime.get("name"), str):
            name, options = runtime["name"], runtime.get("options") or {}
        else:
            raise ConfigError(
                f"`runtime` in {path.name} must be a name (runtime: python) or a mapping with `name` and `options`, "
                f"not {runtime!r}.",
                where=f"{path}: runtime",
                fix="Write `runtime: python`, or `runtime: {name: python, options: {virtualenv: venv}}`.",
            )
        if name != "python":
            raise ConfigError(
                f"The Pulumi project's runtime is {name!r}; the pulumi backend runs Python programs only for now.",
                where=f"{path}: runtime",
                fix="Use `runtime: python`, or run this project with the Pulumi CLI directly.",
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"`runtime.options` in {path.name} must be a mapping, not {options!r}.",
                where=f"{path}: runtime.options",
                fix="Write e.g. `options: {virtualenv: venv}`.",
            )
        unsupported = sorted(
            key
            for key, value in options.items()
            if key not in RUNTIME_OPTIONS or RUNTIME_OPTIONS[key] not in (None, value)
        )
        if unsupported:
            raise ConfigError(
                f"The runtime option {unsupported[0]!r} is not supported with {options[unsupported[0]]!r}: the runner "
                "makes the program's virtualenv itself, with pip.",
                where=f"{path}: runtime.options",
                fix="Use `virtualenv: <dir>` (with a requirements.txt; `toolchain: pip` may stay), or no options "
                "to run with the runner's Python.",
            )
        backend = data.get("backend")
        main = data.get("main")
        config = data.get("config")
        return cls(
            path,
            data["name"],
            name,
            options,
            backend.get("url") if isinstance(backend, dict) and isinstance(backend.get("url"), str) else None,
            main if isinstance(main, str) else None,
            config if isinstance(config, dict) else {},
        )

    def program(self, folder: Path) -> Path:
        main = folder / (self.main or ".")
        return main / "__main__.py" if main.is_dir() else main


def check_program(folder: Path, project: Project) -> None:
    """The program exists and is Python: a syntax error is bad input (exit 2), found before anything changes."""
    main = project.program(folder)
    if not main.is_file():
        raise ConfigError(
            f"The Pulumi project has no program: {main.name} is missing.",
            where=str(main.parent),
            fix="Add the program's __main__.py (or point `main:` in Pulumi.yaml at it).",
        )
    try:
        compile(read_text(main, "Pulumi program"), str(main), "exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"The Pulumi program has a syntax error: {exc.msg}.",
            where=f"{main.name}:{exc.lineno}",
            fix="Fix the Python syntax at that line.",
        ) from None


def declared_config(folder: Path) -> Declared:
    """Config the project declares in Pulumi.yaml, and the keys its Python program reads with pulumi.Config."""
    project: Project | None = None
    with contextlib.suppress(ConfigError):
        project = Project.load(folder)
    declared: dict[str, InputSpec] = {}
    name = project.name if project else ""
    for key, given in (project.config if project else {}).items():
        spec = given if isinstance(given, dict) else {"default": given}
        declared[str(key).removeprefix(f"{name}:")] = InputSpec("default" not in spec, bool(spec.get("secret")))
    complete = True
    found = False
    for path in _python_files(folder):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError, OSError):
            complete = False
            continue
        reads, dynamic = _config_reads(tree, name)
        found = found or bool(reads)
        complete = complete and not dynamic
        for key, decl in reads.items():
            known = declared.get(key)
            declared[key] = InputSpec(decl.required or bool(known and known.required), decl.secret, decl.type)
    return declared, complete and (found or bool(declared))


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        parts = set(path.relative_to(folder).parts)
        if not parts & {"venv", ".venv", "__pycache__", "node_modules"}:
            yield path


def _config_reads(tree: ast.AST, project: str) -> tuple[dict[str, InputSpec], bool]:
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
    reads: dict[str, InputSpec] = {}
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
        kind = _TYPES.get(match.group(3) or "", "") or (earlier.type if earlier else "")
        reads[key] = InputSpec(required, bool(match.group(2)) or bool(earlier and earlier.secret), kind)
    return reads, dynamic


def check_config(
    project: Project, folder: Path, stack_settings: Path, inputs: Mapping[str, Any], secret_inputs: Mapping[str, Any]
) -> None:
    """The program's configuration before anything is created: a required key without a value, a null, or a value
    the program cannot read as the type it asks for (`require_int`...) is bad input, named, exit 2 — not a
    program failure after the stack was made."""
    for key, value in inputs.items():
        if value is None:
            raise ConfigError(
                f"Input {key!r} is null: Pulumi config has no null (the program would read an empty string).",
                where="the resource inputs",
                fix=f"Give {key!r} a value, or leave it out to let the program use its default.",
            )
    declared, _ = declared_config(folder)
    given = {**inputs, **secret_inputs}
    provided = set(given) | _configured(stack_settings)
    missing = sorted(k for k, spec in declared.items() if spec.required and k not in provided)
    if missing:
        raise ConfigError(
            f"The program requires configuration '{project.name}:{missing[0]}', which the inputs do not give"
            + (f" (also missing: {', '.join(missing[1:])})." if missing[1:] else "."),
            where=f"the program's config.require(...) calls; {stack_settings.name} and the resource inputs",
            fix=f"Add {missing[0]!r} to the resource inputs"
            + (" as a secret input." if declared[missing[0]].secret else "."),
        )
    for key, value in given.items():
        spec = declared.get(key)
        if spec and spec.type and not _fits(value, spec.type):
            shown = "" if key in secret_inputs else f", not {value!r}"
            raise ConfigError(
                f"Input {key!r} must be {_ARTICLE[spec.type]} for the program{shown}.",
                where=f"the program reads it with config.get_{_GETTER[spec.type]} / require_{_GETTER[spec.type]}",
                fix=f"Give {key!r} {_ARTICLE[spec.type]} in the resource inputs.",
            )


_ARTICLE = {"integer": "an integer", "number": "a number", "boolean": "a boolean", "object": "an object or list"}
_GETTER = {"integer": "int", "number": "float", "boolean": "bool", "object": "object"}


def _fits(value: Any, kind: str) -> bool:
    text = value if isinstance(value, str) else None
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or bool(text and re.fullmatch(r"-?\d+", text))
    if kind == "number":
        return (isinstance(value, int | float) and not isinstance(value, bool)) or bool(
            text and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text)
        )
    if kind == "boolean":
        return isinstance(value, bool) or text in ("true", "false", "True", "False")
    if kind == "object":
        if isinstance(value, dict | list):
            return True
        with contextlib.suppress(ValueError, TypeError):
            return isinstance(json.loads(text or ""), dict | list)
        return False
    return True


def _configured(stack_settings: Path) -> set[str]:
    """The keys a `Pulumi.<stack>.yaml` beside the program sets (short names for the project's own)."""
    if not stack_settings.is_file():
        return set()
    data = yamlfile.load(stack_settings, stack_settings.name)
    config = data.get("config") if isinstance(data, dict) else None
    return {str(k).split(":", 1)[-1] for k in (config or {})}


def local_dependencies(folder: Path) -> set[Path]:
    """Folders outside the project that its Python code reaches by a relative path (`sys.path.insert(0,
    os.path.join(os.path.dirname(__file__), "..", "shared"))`, `Path(__file__).parent.parent / "shared"`, a
    "../shared" string): a sparse checkout must fetch them too. A best effort: IAC_RUNNER_SOURCE_INCLUDE names
    what this cannot see."""
    found: set[Path] = set()
    for path in _python_files(folder):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError, OSError):
            continue
        for relative in _relative_paths(tree):
            target = Path(os.path.normpath(path.parent / relative))
            if not target.is_relative_to(folder):
                found.add(target)
    return found


def _relative_paths(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("../"):
            yield node.value
        elif isinstance(node, ast.Call) and _name_of(node.func) == "join":
            parts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if parts and parts[0] == "..":
                yield "/".join(parts)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            ups = _parents_of_file(node.left)
            if ups and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
                yield "/".join([".."] * ups + [node.right.value])


def _name_of(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _parents_of_file(node: ast.expr) -> int:
    """How many folders above the file's own `Path(__file__)[.resolve()].parent.parent...` is (0 if it is not)."""
    count = 0
    while isinstance(node, ast.Attribute) and node.attr == "parent":
        count += 1
        node = node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("resolve", "absolute")
    ):
        node = node.func.value
    is_file = isinstance(node, ast.Call) and any(isinstance(a, ast.Name) and a.id == "__file__" for a in node.args)
    return count - 1 if is_file and count > 1 else 0
