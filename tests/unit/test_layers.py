"""The layout is the architecture: each layer imports only the layers below it, and nothing outside
`iac_runner/backends/` names a backend (it asks the Backend protocol instead)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from iac_runner import backends

PACKAGE = Path(backends.__file__).resolve().parent.parent
#: Lowest first; a module may import its own layer and those before it.
LAYERS = ("common", "backends", "job", "local", "humanitec", "cli")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(module: str) -> str | None:
    """The layer of a dotted module name inside iac_runner (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "iac_runner" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports (at module level or inside functions), as absolute dotted names."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from iac_runner import backends` imports the subpackage.
            found += [
                (node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "iac_runner"
            ]
    return found


def _own_layer(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE).parts
    return relative[0] if len(relative) > 1 else None


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_the_layers_below_it(path: Path) -> None:
    own = _own_layer(path)
    if own is None:
        return  # the package root (__main__) sits on top of everything
    rank = LAYERS.index(own)
    wrong = [
        f"line {line}: {module} ({_layer(module)})"
        for line, module in _imports(path)
        if (layer := _layer(module)) in LAYERS and LAYERS.index(layer) > rank
    ]
    assert not wrong, f"{path.relative_to(PACKAGE)} ({own}) imports higher layers: {wrong}"


def test_the_package_does_not_import_the_old_roots() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} {module}"
        for path in _modules()
        for line, module in _imports(path)
        if module.split(".")[0] in ("runner", "backends")
    ]
    assert not offenders


def test_nothing_outside_backends_names_a_backend() -> None:
    """A backend name as a whole string constant (a comparison, a dict key, an import) outside backends/ means
    the tooling branches on a backend; help texts that list them are longer strings and pass."""
    names = set(backends.builtins())
    offenders = []
    for path in _modules():
        if _own_layer(path) == "backends":
            continue
        tree = ast.parse(path.read_text())
        offenders += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names
        ]
        offenders += [
            f"{path.relative_to(PACKAGE)}:{line} imports {module}"
            for line, module in _imports(path)
            if module.startswith("iac_runner.backends.") and module.split(".")[2] in names
        ]
    assert not offenders, offenders


def test_layer_rule_catches_a_violation(tmp_path: Path) -> None:
    """The check itself: a common module that imports the job layer is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from iac_runner.job import run\n")
    layers = [_layer(m) for _, m in _imports(module)]
    assert "job" in layers and LAYERS.index("job") > LAYERS.index("common")
