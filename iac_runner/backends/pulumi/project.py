"""A Pulumi project as the runner reads it without running the engine: `Pulumi.yaml` (parsed once, checked with
a message for every way it can be wrong) and the config keys its Python program reads."""

from __future__ import annotations

import ast
import contextlib
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
#: Runtime options the runner knows what to do with.
RUNTIME_OPTIONS = ("virtualenv",)
_CONFIG_READ = re.compile(r"^(get|require)(_secret)?(_int|_bool|_float|_object)?$")


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
        unsupported = sorted(set(options) - set(RUNTIME_OPTIONS))
        if unsupported:
            raise ConfigError(
                f"The runtime option {unsupported[0]!r} is not supported by the runner's Python language host.",
                where=f"{path}: runtime.options",
                fix="Use `virtualenv: <dir>` (with a requirements.txt), or no options to run with the runner's Python.",
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
            declared[key] = InputSpec(decl.required or bool(known and known.required), decl.secret)
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
        reads[key] = InputSpec(required, bool(match.group(2)) or bool(earlier and earlier.secret))
    return reads, dynamic
