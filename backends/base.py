"""The Backend protocol: the one seam between the runner's core and an IaC engine.

A backend is an object with a name and a handful of verbs over one `StackContext`. It raises the runner's
error types (`runner.errors`), never exits, imports its engine SDK lazily, and runs every engine process
through `runner.process.run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runner.outputs import Output
from runner.process import Deadline
from runner.settings import StackFile


class EngineUnavailable(Exception):
    """The backend's engine cannot be used on this machine; the message says why and how to get it."""


@dataclass(frozen=True)
class StackContext:
    folder: Path
    stack_name: str
    inputs: Mapping[str, Any]
    secret_inputs: Mapping[str, Any]
    stack_file: StackFile
    deadline: Deadline
    work_dir: Path
    state_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: Seconds to wait for a state lock held by another run.
    lock_timeout: int = 60
    #: The engine executable when not the backend's default (e.g. `terraform` for the opentofu backend).
    engine_binary: str | None = None
    #: Release a lock a dead run left on the stack before acting (pulumi cancel); never done unasked.
    cancel_lock: bool = False

    @property
    def all_inputs(self) -> dict[str, Any]:
        return {**self.inputs, **self.secret_inputs}


@dataclass(frozen=True)
class InputSpec:
    """What a stack declares about one of its inputs."""

    required: bool
    secret: bool = False


#: The inputs a stack declares, and whether that list is complete (a file that could not be read, or a program
#: that reads config under computed names, makes it incomplete: unknown names must then pass).
Declared = tuple[dict[str, InputSpec], bool]


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # "add", "change", "remove", "replace"
    type: str = ""


@dataclass(frozen=True)
class ChangeSummary:
    changes: tuple[ResourceChange, ...] = ()

    def count(self, action: str) -> int:
        # A replacement is one add plus one remove, as tofu counts it.
        return sum(1 for c in self.changes if c.action == action or (c.action == "replace" and action != "change"))

    def __str__(self) -> str:
        return f"{self.count('add')} to add, {self.count('change')} to change, {self.count('remove')} to remove"


@runtime_checkable
class Backend(Protocol):
    name: str
    #: Glob patterns of the stack's companion files (its own tfvars, backend, stack config) that the driver's
    #: `files` input writes into SCRIPTS_DIRECTORY; brought into a git checkout of the stack.
    companions: tuple[str, ...]

    def detect(self, folder: Path) -> str | None:
        """The file that marks `folder` as this backend's stack, or None."""

    def needs_state(self, folder: Path) -> bool:
        """Whether the runner must give this stack a place for its state (IAC_RUNNER_STATE_URL, required in
        container mode): false for engines that keep it themselves (CloudFormation) and for stacks that
        declare their own state backend."""

    def engine_version(self) -> str:
        """The engine version this backend would use; raises EngineUnavailable with the reason."""

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        """The inputs the stack in `folder` declares, read without running the engine."""

    def validate(self, ctx: StackContext) -> None:
        """Check the stack and its inputs without changing anything (and without touching state)."""

    def plan(self, ctx: StackContext) -> ChangeSummary:
        """Validate, then preview the changes an apply would make."""

    def apply(self, ctx: StackContext) -> list[Output]:
        """Validate, then create or update the stack (idempotent) and return its outputs."""

    def destroy(self, ctx: StackContext) -> None: ...

    def outputs(self, ctx: StackContext) -> list[Output]: ...
