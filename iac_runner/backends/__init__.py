"""The backend registry: the engine modules of this package plus third-party backends from the
`iac_runner.backends` entry points.

A built-in backend is a module (or package) here whose `BACKEND` object implements the protocol; adding one touches
that module only. Modules are imported only when a backend is used, so listing names costs nothing and `--help`
stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_runner.backends.base import REQUIRED, Backend, BackendDefaults
from iac_runner.common.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

ENTRY_POINT_GROUP = "iac_runner.backends"
_NOT_BACKENDS = {"base"}


def builtins() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_BACKENDS and not m.name.startswith("_")
    )


def names() -> list[str]:
    return sorted({*builtins(), *(ep.name for ep in _plugins())})


def _plugins() -> EntryPoints:
    """The plugins' entry points, read when a stack is detected or a name is not a built-in's: a run told its
    backend skips importlib.metadata and the scan of every installed distribution (~15 ms)."""
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


@cache
def get(name: str) -> Backend:
    if name in builtins():
        backend: Backend = importlib.import_module(f"{__name__}.{name}").BACKEND
        return backend
    for ep in _plugins():
        if ep.name == name:
            return _load_plugin(ep.name, ep.load())
    raise ConfigError(
        f"Unknown backend {name!r}.",
        where="IAC_RUNNER_BACKEND / --backend / `backend:` in iac-runner.yaml",
        fix=f"Use one of: {', '.join(names())} (plugins register under the entry-point group {ENTRY_POINT_GROUP!r}).",
    )


class _Plugin(BackendDefaults):
    """A plugin's backend with the protocol's defaults for the optional members it does not have."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattribute__(self, attribute: str) -> Any:
        backend = object.__getattribute__(self, "_backend")
        if not attribute.startswith("_") and hasattr(backend, attribute):
            return getattr(backend, attribute)
        return object.__getattribute__(self, attribute)


def _load_plugin(name: str, obj: object) -> Backend:
    backend = obj() if isinstance(obj, type) else obj
    missing = [member for member in REQUIRED if not hasattr(backend, member)]
    if missing:
        raise ConfigError(
            f"The plugin backend {name!r} does not implement the Backend protocol (it lacks {', '.join(missing)}).",
            where=f"entry point {name!r} in group {ENTRY_POINT_GROUP!r}",
            fix="It must provide what iac_runner/backends/base.py's Backend protocol requires: "
            f"{', '.join(REQUIRED)}; the other members have defaults.",
        )
    wrapped: Backend = backend if isinstance(backend, BackendDefaults) else _Plugin(backend)  # type: ignore[assignment]
    return wrapped


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
            fix="Point IAC_RUNNER_SOURCE_PATH (--path) at the stack's folder: *.tf/*.tf.json/*.tofu for opentofu, "
            "Pulumi.yaml for pulumi, template.yaml/yml/json with Resources for cloudformation; or set "
            "IAC_RUNNER_BACKEND (--backend).",
        )
    evidence = "; ".join(f"{backend.name} ({marker})" for backend, marker in found)
    raise ConfigError(
        "Several kinds of stack were detected in the stack folder.",
        where=f"{folder}: {evidence}",
        fix="Choose one with IAC_RUNNER_BACKEND (--backend) or `backend:` in iac-runner.yaml.",
    )
