"""What every command module of the CLI shares: how a command is added, and where its failure is reported."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ErrorSink:
    """Where a failure is reported besides the log: the driver's ERROR_FILE or --out-dir/error.txt."""

    path: Path | None = None


Handler = Callable[[argparse.Namespace, ErrorSink], int]


def add_command(
    sub: Any, name: str, handler: Handler, common: argparse.ArgumentParser, help_text: str
) -> argparse.ArgumentParser:
    cmd: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
    cmd.set_defaults(handler=handler)
    return cmd


def add_group(sub: Any, name: str, common: argparse.ArgumentParser, help_text: str, description: str) -> Any:
    """A command group (`definition`, `driver`): its subcommands are added to what this returns."""
    group = sub.add_parser(name, parents=[common], help=help_text, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
