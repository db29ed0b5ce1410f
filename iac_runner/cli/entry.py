"""The entry point of `iac-runner` and `python -m iac_runner`: SIGTERM and SIGINT are caught before anything else is
imported, so that a signal in the first moments of a run still ends it with exit 130 and the error file (an
orchestrator may stop a pod as soon as it started it), not with the bare 143 of a process killed by it."""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)
    from iac_runner.cli.main import main as run  # the parser, and the heavy imports behind it

    return run(early_signal=_received[0] if _received else None)
