"""Reading an OpenTofu configuration without running tofu: its files in both syntaxes (native `*.tf`/`*.tofu` and
JSON `*.tf.json`/`*.tofu.json`), the variables it declares, a backend block of its own, local module folders, and
the tfvars files beside it.

The native syntax is parsed (python-hcl2, slow to import) only where a quick look is not enough; a file that
cannot be parsed makes what is read incomplete, never an error: `tofu validate` reports it with its own words.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from iac_runner.backends.base import Declared, InputSpec
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text

NATIVE = ("*.tf", "*.tofu")
JSON = ("*.tf.json", "*.tofu.json")
#: The file the runner adds (in its own copy of the stack, never in the user's folder) to choose the backend.
OVERRIDE_FILE = "zz_iac_runner_backend_override.tf"
TFVARS = ("terraform.tfvars", "*.auto.tfvars")
TFVARS_JSON = ("terraform.tfvars.json", "*.auto.tfvars.json")
_VARIABLE_HEADER = re.compile(r'^\s*variable\s+"([^"]+)"', re.MULTILINE)
_BACKEND_BLOCK = re.compile(r'^\s*backend\s+"[A-Za-z0-9_-]+"\s*\{', re.MULTILINE)
_MODULE_SOURCE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)


def sources(folder: Path) -> list[Path]:
    """The configuration files of the stack (the runner's own override excluded)."""
    found = sorted({*_glob(folder, NATIVE), *_glob(folder, JSON)})
    for path in found:
        if not path.is_file():
            raise ConfigError(
                f"{path.name} in the stack folder is not a regular file.",
                where=str(path),
                fix="Rename the folder: OpenTofu reads every *.tf, *.tofu, *.tf.json and *.tofu.json entry as a "
                "configuration file.",
            )
    return [p for p in found if p.name != OVERRIDE_FILE]


def is_json(path: Path) -> bool:
    return path.name.endswith(".json")


def _glob(folder: Path, patterns: Iterable[str]) -> Iterator[Path]:
    for pattern in patterns:
        yield from folder.glob(pattern)


def text(path: Path) -> str:
    return strip_comments(read_text(path, "configuration file")) if not is_json(path) else read_text(path, "file")


def strip_comments(source: str) -> str:
    return re.sub(r"/\*.*?\*/|(#|//)[^\n]*", "", source, flags=re.DOTALL)


def _json(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError, ConfigError):
        data = json.loads(read_text(path, "configuration file"))
        return data if isinstance(data, dict) else None
    return None


def _blocks(value: Any) -> Iterator[dict[str, Any]]:
    """A JSON-syntax block value: one object, or a list of objects (both are allowed)."""
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def backend_files(folder: Path) -> list[Path]:
    """The files that declare a `backend` block (e.g. a `backend.tf` or `backend.tf.json` the driver's files
    wrote): the stack then keeps its state where it says."""
    found = []
    for path in sources(folder):
        if is_json(path):
            data = _json(path) or {}
            if any("backend" in block for block in _blocks(data.get("terraform"))):
                found.append(path)
        elif _BACKEND_BLOCK.search(text(path)):
            found.append(path)
    return found


def variable_names(folder: Path) -> set[str]:
    """A quick look at the variables' names (no full parse)."""
    names: set[str] = set()
    for path in sources(folder):
        if is_json(path):
            names.update(name for block in _blocks((_json(path) or {}).get("variable")) for name in block)
        else:
            names.update(_VARIABLE_HEADER.findall(text(path)))
    return names


def declared_variables(folder: Path) -> Declared:
    """Declared variables, and whether every configuration file could be parsed."""
    declared: dict[str, InputSpec] = {}
    complete = True
    for path in sources(folder):
        bodies = _json_variables(path) if is_json(path) else _native_variables(path)
        if bodies is None:  # a broken file is validate's to report
            complete = False
            continue
        for name, body in bodies.items():
            declared[name] = InputSpec("default" not in body, body.get("sensitive") is True)
    return declared, complete


def _json_variables(path: Path) -> dict[str, dict[str, Any]] | None:
    data = _json(path)
    if data is None:
        return None
    return {
        name: body if isinstance(body, dict) else {} for b in _blocks(data.get("variable")) for name, body in b.items()
    }


def _native_variables(path: Path) -> dict[str, dict[str, Any]] | None:
    import hcl2

    try:
        with path.open(encoding="utf-8") as handle:
            blocks = hcl2.load(handle).get("variable", [])
    except Exception:  # python-hcl2 raises lark's errors and others: the file is incomplete to us, not an error
        return None
    return {name.strip('"'): body for block in blocks for name, body in block.items()}


def module_dirs(folder: Path) -> set[Path]:
    """The folders of the stack's local modules (`source = "../modules/x"`), followed into modules that use
    others, as tofu resolves them: joined to the calling module's folder, not through symlinks."""
    found: set[Path] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        for path in _glob(current, (*NATIVE, *JSON)):
            for source in _module_sources(path):
                target = Path(_join(current, source))
                if target not in found:
                    found.add(target)
                    pending.append(target)
    return found


def _module_sources(path: Path) -> list[str]:
    if not path.is_file():
        return []
    if is_json(path):
        modules = (_json(path) or {}).get("module")
        return [
            str(body.get("source"))
            for block in _blocks(modules)
            for body in block.values()
            if isinstance(body, dict) and str(body.get("source", "")).startswith(("./", "../"))
        ]
    with contextlib.suppress(ConfigError):
        return _MODULE_SOURCE.findall(text(path))
    return []


def _join(folder: Path, relative: str) -> str:
    """`folder/relative` with `..` taken lexically, as tofu joins module paths."""
    parts = list(folder.parts)
    for part in PurePosixPath(relative).parts:
        if part == "..":
            if len(parts) > 1:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return str(Path(*parts))


def provided_elsewhere(folder: Path, env_names: Iterable[str]) -> set[str]:
    """Variables set the way Container Driver users set them today: tfvars files beside the code, TF_VAR_* (the
    names in `env_names`)."""
    import hcl2

    names = {k.removeprefix("TF_VAR_") for k in env_names if k.startswith("TF_VAR_")}
    for path in _glob(folder, TFVARS):
        with contextlib.suppress(Exception), path.open(encoding="utf-8") as handle:
            names.update(hcl2.load(handle))
    for path in _glob(folder, TFVARS_JSON):
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(path.read_text(encoding="utf-8"))
            names.update(data if isinstance(data, dict) else {})
    return names


def lock_hosts(folder: Path) -> set[str] | None:
    """The registries a committed `.terraform.lock.hcl` locks providers of, or None without one."""
    lock = folder / ".terraform.lock.hcl"
    if not lock.is_file():
        return None
    return set(re.findall(r'^provider\s+"([^/"]+)/', lock.read_text(errors="replace"), re.MULTILINE))


def hcl_value(value: Any) -> str:
    """A value in the native syntax (for a -backend-config file)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {hcl_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)
