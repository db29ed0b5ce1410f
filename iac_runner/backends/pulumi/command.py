"""The Automation API's engine commands through the runner's process seam.

`LocalWorkspaceOptions(pulumi_command=...)` takes any `PulumiCommand`; this one runs each `pulumi` command with
`process.run`, so the run's deadline, signal forwarding and redaction apply to the engine as they do to every
other engine process. Imported only when a stack is run: it needs the optional `pulumi` SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pulumi.automation import CommandResult, OnOutput, PulumiCommand
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

from iac_runner.common import process
from iac_runner.common.log import log


class SeamCommand(PulumiCommand):
    """The CLI at `cli`, whose version the backend has already read (`pulumi version`)."""

    def __init__(self, cli: str, version: str, deadline: process.Deadline) -> None:
        # Not PulumiCommand.__init__: it would run `pulumi version` itself, outside the seam.
        self.command = cli
        self.version = VersionInfo.parse(version)
        self.deadline = deadline
        #: What the engine is doing, for a timeout's message (the session sets it per operation).
        self.doing = "running pulumi"

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: OnOutput | None = None,
        on_error: OnOutput | None = None,
    ) -> CommandResult:
        # What PulumiCommand.run does around the process: never interactive, marked as the Automation API, the
        # CLI's own folder (its language host, the dynamic provider plugin) first on PATH.
        separator = args.index("--") if "--" in args else len(args)
        if "--non-interactive" not in args[:separator]:
            args.insert(0, "--non-interactive")
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        env["PATH"] = os.pathsep.join([str(Path(self.command).parent), env.get("PATH", "")])
        done = process.run(
            [self.command, *args],
            engine="pulumi",
            deadline=self.deadline,
            cwd=Path(cwd),
            env=env,
            on_stdout=on_output or _quiet,
            on_stderr=on_error or log.debug,
            doing=self.doing,
        )
        result = CommandResult(stdout=_text(done.stdout), stderr=_text(done.stderr), code=done.returncode)
        if done.returncode != 0:
            raise create_command_error(result)
        return result


def _quiet(_line: str) -> None:
    """The CLI's output where the Automation API has no callback: it reads the result from CommandResult."""


def _text(output: str) -> str:
    """As PulumiCommand.run returns it: lines without their trailing whitespace."""
    return "\n".join(line.rstrip() for line in output.splitlines())
