"""`iac-runner`: the parser, and the one place where a failure becomes an exit code, a log line and the error file.

Heavy modules (botocore, cfn-lint, GitPython, pydantic, the Pulumi SDK) are imported inside the commands that use
them, so that `iac-runner --help` and a run's start stay fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from iac_runner.cli import definition, driver, stack, tools
from iac_runner.cli.base import ErrorSink
from iac_runner.common import process
from iac_runner.common.errors import ExitCode, RunnerError
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY


def main(argv: Sequence[str] | None = None, *, early_signal: int | None = None) -> int:
    process.catch_signals_early(early_signal)
    parser = _parser()
    args = parser.parse_args(argv)
    fmt = args.log_format or os.environ.get("IAC_RUNNER_LOG_FORMAT", "text")
    log.configure("json" if fmt == "json" else "text", debug=args.debug)
    sink = ErrorSink()
    try:
        code: int = args.handler(args, sink)
    except RunnerError as err:
        return _report(err, sink)
    except (KeyboardInterrupt, process.Signalled) as stop:
        signum = stop.signum if isinstance(stop, process.Signalled) else signal.SIGINT
        return _report(process.interrupted(signum), sink)
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        internal = RunnerError(
            f"Internal error in iac-runner: {type(exc).__name__}: {exc}",
            fix="Run again with --debug for the traceback and report it; this is a bug, not your configuration.",
        )
        return _report(internal, sink)
    late = process.signal_received()
    if late is not None and code == ExitCode.OK:
        # The work was done (the output files are written) when the signal came; the driver still hears of it.
        return _report(process.interrupted(late, after_the_work=True), sink)
    sink.finish(code)
    return code


def _report(err: RunnerError, sink: ErrorSink) -> int:
    text = REGISTRY.redact(err.render())
    summary, _, rest = text.partition("\n")
    log.error(summary)
    for line in filter(None, rest.splitlines()):
        log.info(line)
    if sink.path is not None:
        from iac_runner.common.files import write_atomic

        try:
            write_atomic(sink.path, text + "\n")
        except OSError as exc:
            log.error(f"could not write the error file {sink.path}: {exc.strerror}")
    sink.finish(int(err.exit_code), err)
    return int(err.exit_code)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=("text", "json"), help="text (default) or one JSON object per line")
    common.add_argument("--debug", action="store_true", help="show debug lines and Python tracebacks")

    parser = argparse.ArgumentParser(
        prog="iac-runner",
        parents=[common],
        description="Apply and destroy OpenTofu, Pulumi and CloudFormation stacks as a Container Driver job, "
        "and test them locally.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (stack, tools, definition, driver):
        group.register(sub, common)
    return parser


if __name__ == "__main__":
    sys.exit(main())
