"""Pulumi through its Automation API: a LocalWorkspace on the checked-out project folder, the real CLI and Python
language host.

project.py reads the project without the engine; engine.py drives the CLI, the language host and the Automation
API's processes; session.py is one run's workspace and stack; errors.py puts the engine's failures in the runner's
words.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from iac_runner.backends.base import (
    BackendDefaults,
    ChangeSummary,
    Declared,
    Drift,
    Output,
    StackContext,
    StackFile,
)
from iac_runner.backends.pulumi import engine
from iac_runner.backends.pulumi.project import (
    Project,
    check_config,
    check_program,
    declared_config,
    local_dependencies,
    project_file,
)
from iac_runner.backends.pulumi.session import Gone, Session, stack_name
from iac_runner.common.errors import ConfigError, EngineError
from iac_runner.common.log import log

T = TypeVar("T")


class PulumiBackend(BackendDefaults):
    name = "pulumi"
    companions = ("Pulumi.*.yaml", "Pulumi.*.yml")
    host_variables = ("PULUMI_HOME", "PULUMI_SKIP_UPDATE_CHECK")

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

    def local_dependencies(self, folder: Path) -> set[Path]:
        return local_dependencies(folder)

    def secret_env(self, has_secret_inputs: bool) -> dict[str, str]:
        return {engine.PASSPHRASE: "the passphrase that encrypts the stack's secrets"} if has_secret_inputs else {}

    def engine_version(self) -> str:
        return engine.probe(engine.find_cli()).describe()

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        project = Project.load(ctx.folder)
        engine.check_passphrase(dict(ctx.env), bool(ctx.secret_inputs))
        check_program(ctx.folder, project)
        log.info(f"Pulumi project {project.name!r} is valid (runtime python)")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        project = self._checked(ctx)
        with Session(ctx, project) as session:
            return session.preview().summary

    def apply(self, ctx: StackContext) -> list[Output]:
        project = self._checked(ctx)
        with Session(ctx, project) as session:
            if ctx.options.refresh:
                session.refresh()
            previewed = session.preview()
            ctx.approve(previewed.summary)
            if not previewed.update_needed:
                # What a no-change `up` would do, without running the program a second time.
                log.info("no changes: the infrastructure matches the program")
                return session.outputs()
            return session.outputs(plain=session.up())

    def _checked(self, ctx: StackContext) -> Project:
        """The project, its program and its configuration checked before a stack is created or changed."""
        with ctx.events.phase("validate"):
            project = Project.load(ctx.folder)
            check_program(ctx.folder, project)
            settings = ctx.folder / f"Pulumi.{stack_name(ctx)}.yaml"
            check_config(project, ctx.folder, settings, ctx.inputs, ctx.secret_inputs)
        return project

    def destroy(self, ctx: StackContext) -> None:
        try:
            with Session(ctx, create=False) as session:
                session.destroy()
        except Gone:
            log.info("the stack does not exist: nothing to destroy")

    def outputs(self, ctx: StackContext) -> list[Output]:
        return _existing(ctx, "it has no outputs", Session.outputs)

    def drift(self, ctx: StackContext) -> Drift:
        return _existing(ctx, "it cannot drift", Session.drift)


BACKEND = PulumiBackend()


def _existing(ctx: StackContext, consequence: str, read: Callable[[Session], T]) -> T:
    """`read` of a stack that must exist already (a read-only verb never creates one)."""
    try:
        with Session(ctx, create=False) as session:
            return read(session)
    except Gone:
        raise EngineError(
            f"Stack {ctx.stack_name} does not exist, so {consequence}.",
            fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
        ) from None
