"""The driver's `files` that belong beside the stack: a definition writes the stack's own tfvars, backend or stack
config (`Backend.companions`) at the shared directory's root, whichever folder the stack is in."""

from __future__ import annotations

from pathlib import Path

from iac_runner.backends.base import Backend


def companions(backend: Backend, scripts: Path) -> dict[str, Path]:
    """The companion files at the root of `scripts`, by name."""
    found = {p.name: p for pattern in backend.companions for p in scripts.glob(pattern) if p.is_file()}
    return dict(sorted(found.items()))
