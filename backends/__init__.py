"""The backend registry: built-ins plus third-party backends from the `iac_runner.backends` entry points.

Modules are imported only when a backend is used, so listing names costs nothing and `--help` stays fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from backends.base import Backend
from runner.errors import ConfigError

ENTRY_POINT_GROUP = "iac_runner.backends"

# name -> "module:attribute" of the backend object.
BUILTINS = {
    "cloudformation": "backends.cloudformation:BACKEND",
    "opentofu": "backends.opentofu:BACKEND",
    "pulumi": "backends.pulumi:BACKEND",
}


def names() -> list[str]:
    return sorted({*BUILTINS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def get(name: str) -> Backend:
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        backend: Backend = getattr(importlib.import_module(module), attr)
        return backend
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _load_plugin(ep.name, ep.load())
    raise ConfigError(
        f"Unknown backend {name!r}.",
        where="IAC_RUNNER_BACKEND / --backend / `backend:` in iac-runner.yaml",
        fix=f"Use one of: {', '.join(names())} (plugins register under the entry-point group {ENTRY_POINT_GROUP!r}).",
    )


def _load_plugin(name: str, obj: object) -> Backend:
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise ConfigError(
            f"The plugin backend {name!r} does not implement the Backend protocol.",
            where=f"entry point {name!r} in group {ENTRY_POINT_GROUP!r}",
            fix="It must provide what backends/base.py's Backend protocol lists: name, companions, detect, "
            "needs_state, engine_version, declared_inputs, validate, plan, apply, destroy and outputs.",
        )
    return backend


def detect(folder: Path) -> Backend:
    """The one backend whose marker files are in `folder`."""
    found = [(backend, marker) for backend in map(get, names()) if (marker := backend.detect(folder))]
    if len(found) == 1:
        return found[0][0]
    if not found:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
        raise ConfigError(
            "No stack was detected in the stack folder.",
            where=f"{folder} (contains: {listing})",
            fix="Point IAC_RUNNER_SOURCE_PATH (--path) at the stack's folder: *.tf/*.tofu for opentofu, "
            "Pulumi.yaml for pulumi, template.yaml/yml/json with Resources for cloudformation; or set "
            "IAC_RUNNER_BACKEND (--backend).",
        )
    evidence = "; ".join(f"{backend.name} ({marker})" for backend, marker in found)
    raise ConfigError(
        "Several kinds of stack were detected in the stack folder.",
        where=f"{folder}: {evidence}",
        fix="Choose one with IAC_RUNNER_BACKEND (--backend) or `backend:` in iac-runner.yaml.",
    )
