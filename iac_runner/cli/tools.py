"""`iac-runner backends` (what each backend would run) and `iac-runner demo` (every example on the embedded cloud)."""

from __future__ import annotations

import argparse
from typing import Any

from iac_runner.cli.base import ErrorSink, add_command
from iac_runner.common.errors import ExitCode, RunnerError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(sub, "backends", _backends, common, "list the backends and the engine version each would use")
    add_command(sub, "demo", _demo, common, "run every example stack against an embedded AWS emulator (moto)")


def _backends(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner import backends
    from iac_runner.backends.base import EngineUnavailable

    for name in backends.names():
        try:
            version = backends.get(name).engine_version()
        except (EngineUnavailable, RunnerError) as exc:
            version = f"unavailable: {exc}"
        print(f"{name:16} {version}")
    return ExitCode.OK


def _demo(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner.local.demo import run_demo

    return run_demo()
