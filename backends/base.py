"""Deprecated shim: `backends.base` moved to `iac_runner.backends.base` in 0.2 and goes away in 0.3."""

import warnings

from iac_runner.backends.base import (
    Backend,
    ChangeSummary,
    Declared,
    EngineUnavailable,
    InputSpec,
    ResourceChange,
    StackContext,
)

warnings.warn(
    "backends.base is deprecated: import iac_runner.backends.base instead (the shim is removed in 0.3)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "Backend",
    "ChangeSummary",
    "Declared",
    "EngineUnavailable",
    "InputSpec",
    "ResourceChange",
    "StackContext",
]
