"""Pulumi through its Automation API: a LocalWorkspace on the checked-out project folder, the real CLI and Python
language host.

project.py reads the project without the engine; engine.py drives the CLI, the language host and the Automation
API's processes; session.py is one run's workspace and stack; errors.py puts the engine's failures in the runner's
words.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from iac_runner.backends.base import (
    BackendDefaults,
    ChangeSummary,
    Declared,
    EngineUnavailable,
    Output,
    StackContext,
    StackFile,
)
from iac_runner.backends.pulumi import engine
from iac_runner.backends.pulumi.project import Project, check_program, declared_config, project_file
from iac_runner.backends.pulumi.session import Gone, Session
from iac_runner.common import process
from iac_runner.common.errors import ConfigError, EngineError
from iac_runner.common.log import log


class PulumiBackend(BackendDefaults):
    name = "pulumi"
    companions = ("Pulumi.*.yaml", "Pulumi.*.yml")

    def detect(self, folder: Path) -> str | None:
        return project_file(folder)

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        return declared_config(folder)

    def needs_state(self, folder: Path | None) -> bool:
        if folder is None:
            return True
        try:
            return Project.load(folder).backend_url is None
        except ConfigError:
            return True

    def secret_env(self, has_secret_inputs: bool) -> dict[str, str]:
        return {engine.PASSPHRASE: "the passphrase that encrypts the stack's secrets"} if has_secret_inputs else {}

    def engine_version(self) -> str:
        cli = engine.find_cli()
        done = process.run(
            [cli, "version"],
            engine="pulumi",
            deadline=process.Deadline(30),
            env=engine.base_env(dict(os.environ), cli),
            on_stdout=lambda line: None,
            on_stderr=lambda line: None,
        )
        version = done.stdout.strip()
        if done.returncode != 0 or not version:
            raise EngineUnavailable(f"{cli} version failed: {done.stderr.strip()[:200]}")
        try:
            sdk = importlib.metadata.version("pulumi")
        except importlib.metadata.PackageNotFoundError:
            raise EngineUnavailable(
                "the pulumi Python SDK is not installed (pip install 'iac-driver-runner[pulumi]')"
            ) from None
        return f"pulumi {version} ({cli}), Automation API {sdk}"

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        project = Project.load(ctx.folder)
        engine.check_passphrase(dict(ctx.env), bool(ctx.secret_inputs))
        check_program(ctx.folder, project)
        log.info(f"Pulumi project {project.name!r} is valid (runtime python)")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        project = Project.load(ctx.folder)
        check_program(ctx.folder, project)
        with Session(ctx, project) as session:
            return session.preview()

    def apply(self, ctx: StackContext) -> list[Output]:
        project = Project.load(ctx.folder)
        check_program(ctx.folder, project)
        with Session(ctx, project) as session:
            return session.outputs(plain=session.up())

    def destroy(self, ctx: StackContext) -> None:
        try:
            with Session(ctx, create=False) as session:
                session.destroy()
        except Gone:
            log.info("the stack does not exist: nothing to destroy")

    def outputs(self, ctx: StackContext) -> list[Output]:
        try:
            with Session(ctx, create=False) as session:
                return session.outputs()
        except Gone:
            raise EngineError(
                f"Stack {ctx.stack_name} does not exist, so it has no outputs.",
                fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
            ) from None


BACKEND = PulumiBackend()
