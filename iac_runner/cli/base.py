"""What every command module of the CLI shares: how a command is added, and where its failure is reported."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_runner.common.log import log

if TYPE_CHECKING:
    from iac_runner.job.report import RunReport


class ErrorSink:
    """Where a run's end is reported besides the log: a failure in the driver's ERROR_FILE (or --out-dir/error.txt),
    and every outcome in the run report (IAC_RUNNER_REPORT_FILE / --report), written whatever happened."""

    path: Path | None = None
    report: RunReport | None = None
    report_path: Path | None = None

    def finish(self, exit_code: int, error: BaseException | None = None) -> None:
        if self.report is None or self.report_path is None:
            return
        try:
            self.report.write(self.report_path, exit_code, error)
        except OSError as exc:
            log.error(f"could not write the run report {self.report_path}: {exc.strerror}")


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
