"""The Backend protocol: the one seam between the runner's job and an IaC engine, and the types it speaks.

A backend is an object with a name and a handful of verbs over one `StackContext`. It raises the runner's error
types (`iac_runner.common.errors`), never exits, imports its engine SDK lazily, and runs every engine process
through `iac_runner.common.process`. The job and the tooling never name a backend: what they need to know about
one (does it keep its own state, which secrets its engine needs, which inputs come from elsewhere) they ask it.
Built-in backends inherit `BackendDefaults`; a plugin that lacks an optional member gets the default from the
registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from iac_runner.common import typed
from iac_runner.common.errors import ConfigError
from iac_runner.common.process import Deadline


class EngineUnavailable(Exception):
    """The backend's engine cannot be used on this machine; the message says why and how to get it."""


@dataclass(frozen=True)
class StackFile:
    """The optional `iac-runner.yaml` beside the stack (read by `typed.build`)."""

    backend: str | None = typed.field(None, typed.text)
    #: cloudformation: which file is the template.
    template: str | None = typed.field(None, typed.text)
    #: Outputs to treat as secret where the engine has no sensitive flag (cloudformation).
    secret_outputs: tuple[str, ...] = typed.field((), typed.strings)
    #: Resources a create may replace or remove (`all` for any); the replacement guard refuses the others.
    allow_replace: tuple[str, ...] = typed.field((), typed.strings)
    #: Resources no create may replace or remove, even with `all`: only a destroy removes them.
    protect: tuple[str, ...] = typed.field((), typed.strings)


@dataclass(frozen=True)
class Output:
    """One stack output, its value with its JSON type, and whether it is secret."""

    name: str
    value: Any
    secret: bool = False


@dataclass(frozen=True)
class InputSpec:
    """What a stack declares about one of its inputs."""

    required: bool
    secret: bool = False
    #: The JSON type the stack reads it as, where it says: "integer", "number", "boolean", "object" ("" = any).
    type: str = ""


#: The inputs a stack declares, and whether that list is complete (a file that could not be read, or a program
#: that reads config under computed names, makes it incomplete: unknown names must then pass).
Declared = tuple[dict[str, InputSpec], bool]


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # "add", "change", "remove", "replace"
    type: str = ""
    #: Why the engine replaces it, in its words ("requires replacement", "Replacement: True").
    reason: str = ""
    #: The attributes that change (for a replacement: those that force it), where the engine says.
    attributes: tuple[str, ...] = ()
    #: The resource's own create never finished (tofu: tainted): replacing it completes it, it loses nothing.
    unfinished: bool = False


@dataclass(frozen=True)
class ChangeSummary:
    changes: tuple[ResourceChange, ...] = ()

    def __post_init__(self) -> None:
        # Engines report resources in the order their parallel steps finish: the report, `plan --json` and the
        # messages list them by address, so two runs of the same plan read the same.
        object.__setattr__(self, "changes", tuple(sorted(self.changes, key=lambda c: c.address)))

    def count(self, action: str) -> int:
        # A replacement is one add plus one remove, as tofu counts it.
        return sum(1 for c in self.changes if c.action == action or (c.action == "replace" and action != "change"))

    def __str__(self) -> str:
        return f"{self.count('add')} to add, {self.count('change')} to change, {self.count('remove')} to remove"


@dataclass(frozen=True)
class DriftedResource:
    """A resource whose real state differs from what the engine's state records."""

    address: str
    type: str = ""
    #: The attributes that differ (empty when the engine does not say).
    attributes: tuple[str, ...] = ()
    #: The resource is gone.
    deleted: bool = False


@dataclass(frozen=True)
class Drift:
    resources: tuple[DriftedResource, ...] = ()

    def __post_init__(self) -> None:
        # In address order, as ChangeSummary: a refresh finds drift in the order its parallel reads finish.
        object.__setattr__(self, "resources", tuple(sorted(self.resources, key=lambda r: r.address)))


@dataclass(frozen=True)
class EngineOptions:
    """Options only some engines act on; a backend reads those it knows."""

    #: The engine executable when not the backend's default (`terraform` for the opentofu backend).
    binary: str | None = None
    #: Release a lock a dead run left on the stack before acting (pulumi cancel); never done unasked.
    cancel_lock: bool = False
    #: Read the real infrastructure before an update, so that a create corrects what changed behind the runner's
    #: back (pulumi up --refresh; tofu always refreshes).
    refresh: bool = False


class RunEvents(Protocol):
    """What a backend tells the run while it works, for the run report (the log has its own lines)."""

    def phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A stage of the engine's work (init, validate, plan, apply, destroy, outputs, refresh)."""

    def changes(self, summary: ChangeSummary) -> None:
        """The changes the engine planned."""

    def engine_version(self, name: str, version: str) -> None:
        """The engine that does the work, as it reported itself during the run."""


class NoEvents:
    """Events nobody listens to (tools that call a backend outside a job)."""

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield

    def changes(self, summary: ChangeSummary) -> None:
        pass

    def engine_version(self, name: str, version: str) -> None:
        pass


def _approve_all(summary: ChangeSummary) -> None:
    pass


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
    #: Seconds the engine's init (providers, plugins, the state backend) may take of the deadline.
    init_timeout: float | None = None
    #: Retries of a transient fault (network, throttling, a 5xx) where a retry is safe.
    retries: int = 0
    #: A folder that outlives the run (beside the output files): where an emergency copy of state is kept.
    keep_dir: Path | None = None
    options: EngineOptions = field(default_factory=EngineOptions)
    events: RunEvents = field(default_factory=NoEvents)
    #: Called with the plan before an apply changes anything; raises to refuse it (the replacement guard).
    approve: Callable[[ChangeSummary], None] = _approve_all

    @property
    def all_inputs(self) -> dict[str, Any]:
        return {**self.inputs, **self.secret_inputs}


@runtime_checkable
class Backend(Protocol):
    name: str
    #: Glob patterns of the stack's companion files (its own tfvars, backend, stack config) that the driver's
    #: `files` input writes into SCRIPTS_DIRECTORY; they join the stack folder in every layout.
    companions: tuple[str, ...]
    #: The engine's machine-level settings (its CLI config, plugin cache, home) that a job run on this machine
    #: inherits, as the image sets them for the Container Driver's job (`driver emulate` passes them on).
    host_variables: tuple[str, ...]

    def detect(self, folder: Path) -> str | None:
        """The file that marks `folder` as this backend's stack, or None."""

    def needs_state(self, folder: Path | None) -> bool:
        """Whether the runner must give the stack a place for its state (IAC_RUNNER_STATE_URL, required in
        container mode): false for engines that keep it themselves (CloudFormation) and for stacks that declare
        their own state backend. `folder` None asks about the backend's stacks in general."""

    def state_identity(self, folder: Path) -> str | None:
        """Where the stack in `folder` fixes its state's identity itself (tofu's own backend block, with its key),
        described for the log; None when the runner's stack name is that identity (and a job must set it)."""

    def engine_version(self) -> str:
        """The engine version this backend would use; raises EngineUnavailable with the reason."""

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        """The inputs the stack in `folder` declares, read without running the engine."""

    def provided_inputs(self, folder: Path, env_names: set[str]) -> set[str]:
        """Declared inputs that get a value without the runner (files beside the code; the engine's own
        variables among `env_names`, the names of the job's environment)."""

    def secret_env(self, has_secret_inputs: bool) -> dict[str, str]:
        """Secret environment variables the engine needs for such a stack: name -> what it is."""

    def secret_input_problem(self, name: str, spec: InputSpec) -> tuple[str, str] | None:
        """Why a secret input cannot go to the input the stack declares (message, fix), or None."""

    def validate(self, ctx: StackContext) -> None:
        """Check the stack and its inputs without changing anything (and without touching state)."""

    def plan(self, ctx: StackContext) -> ChangeSummary:
        """Validate, then preview the changes an apply would make."""

    def apply(self, ctx: StackContext) -> list[Output]:
        """Validate, plan, let `ctx.approve` see the plan, then create or update the stack (idempotent) and
        return its outputs."""

    def destroy(self, ctx: StackContext) -> None: ...

    def outputs(self, ctx: StackContext) -> list[Output]: ...

    def drift(self, ctx: StackContext) -> Drift:
        """Compare the real infrastructure with the engine's state, changing nothing."""

    def local_dependencies(self, folder: Path) -> set[Path]:
        """Folders outside `folder` the stack uses (local modules, shared code), so a sparse checkout fetches
        them too."""


#: What a plugin must have; everything else of `Backend` has a default in `BackendDefaults`.
REQUIRED = ("name", "detect", "engine_version", "validate", "plan", "apply", "destroy", "outputs")


class BackendDefaults:
    """The defaults of the protocol's optional members (what a stateful engine with no special needs wants)."""

    companions: tuple[str, ...] = ()
    host_variables: tuple[str, ...] = ()

    def needs_state(self, folder: Path | None) -> bool:
        return True

    def state_identity(self, folder: Path) -> str | None:
        return None

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        return {}, False

    def provided_inputs(self, folder: Path, env_names: set[str]) -> set[str]:
        return set()

    def secret_env(self, has_secret_inputs: bool) -> dict[str, str]:
        return {}

    def secret_input_problem(self, name: str, spec: InputSpec) -> tuple[str, str] | None:
        return None

    def local_dependencies(self, folder: Path) -> set[Path]:
        return set()

    def drift(self, ctx: StackContext) -> Drift:
        raise ConfigError(
            f"The {getattr(self, 'name', 'plugin')} backend cannot detect drift.",
            fix="Use `plan` to see what an apply would change.",
        )
