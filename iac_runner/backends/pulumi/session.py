"""One Pulumi run: a LocalWorkspace on the project folder and the stack, configured from the inputs, with the
engine's events as progress and its failures in the runner's words.

Inputs become stack config in `Pulumi.<stack>.yaml` (plain values written with their types, secret values
encrypted by `pulumi config set --secret`, which reads them from stdin, never from an argument).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_runner.backends.base import ChangeSummary, Drift, DriftedResource, Output, ResourceChange, StackContext
from iac_runner.backends.pulumi import engine
from iac_runner.backends.pulumi.errors import Scene, classify, provider_message
from iac_runner.backends.pulumi.project import Project
from iac_runner.common import process, yamlfile
from iac_runner.common.errors import Diagnostic, RunnerError
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize
from iac_runner.common.retry import Retry, transient_reason

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack, StepEventMetadata

    from iac_runner.backends.pulumi.command import SeamCommand

SECRET_MASK = "[secret]"  # noqa: S105 - what `pulumi stack output` prints for a secret
STACK_TYPE = "pulumi:pulumi:Stack"
# Engine operations as plan actions; a replacement's own create/delete steps are part of its "replace".
_OPS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
# The stack itself and its provider instances: not resources of the program. (Current SDKs hand the whole stack
# config to the dynamic providers' default provider, so a config change "updates" it.)
_ENGINE_OWN = ("pulumi:pulumi:", "pulumi:providers:")
_TRACEBACK_START = re.compile(
    r"^(Traceback \(most recent call last\):|During handling of the above exception|The above exception was)"
)
_TRACEBACK_BODY = re.compile(r"^(\s|$)")
_PENDING = re.compile(r"with \d+ pending operations from previous deployment")
_PENDING_OP = re.compile(r"^\s*\* (\S+), interrupted while (\w+)", re.MULTILINE)


@dataclass
class Progress:
    """Engine events as per-resource progress; errors kept for the failure message."""

    errors: list[str] = field(default_factory=list)
    #: (resource name, message) of the errors a resource's provider reported.
    resource_errors: list[tuple[str, str]] = field(default_factory=list)
    changes: list[ResourceChange] = field(default_factory=list)
    preview: bool = False
    #: A refresh preview: the steps that would update or delete a resource are its drift.
    refresh: bool = False
    drifted: list[DriftedResource] = field(default_factory=list)
    #: The engine found pending operations in the state: operations a killed run never finished.
    pending: list[str] = field(default_factory=list)
    #: The program's outputs would change (a preview says so on the stack's own resource only).
    outputs_changed: bool = False
    #: The engine began changing a resource: doing the same again is not safe without a new preview.
    started: bool = False
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: Inside a Python traceback the program prints (see _program_line).
    traceback: bool = False

    def __call__(self, event: EngineEvent) -> None:
        if event.diagnostic_event:
            diagnostic = event.diagnostic_event
            message = diagnostic.message.rstrip()
            if diagnostic.severity == "error":
                self.errors.append(message)
                address = resource_name(diagnostic.urn) if diagnostic.urn else ""
                # A provider's failure as its own message (not a traceback's first line).
                summary = (provider_message(message).strip().splitlines() or [""])[0][:300]
                self.diagnostics.append(Diagnostic("error", summary, message, address))
                if diagnostic.urn and "::pulumi:pulumi:Stack::" not in diagnostic.urn:
                    self.resource_errors.append((address, message))
            elif diagnostic.severity == "warning" and _PENDING.search(message):
                # Pulumi's own advice (an interactive `pulumi refresh`) does not fit an unattended run.
                self.pending = [
                    f"{resource_name(urn)} interrupted while {op}" for urn, op in _PENDING_OP.findall(message)
                ]
                then = "an apply does the work again" if self.preview else "this run does the work again"
                log.warning(
                    f"the state holds {len(self.pending) or 'some'} pending operation(s) a killed run never finished "
                    f"({'; '.join(self.pending) or 'see --debug'}): {then}, and once it succeeds iac-runner clears "
                    "them from the state"
                )
            elif diagnostic.severity == "warning":
                log.warning(message)
            elif diagnostic.severity.startswith("info") and message:
                # What the program prints. "debug" diagnostics are the SDK's tracing, resource properties
                # included (secrets not yet known to the registry among them): never shown.
                for line in message.splitlines():
                    self._program_line(line)
        elif event.resource_pre_event:
            meta = event.resource_pre_event.metadata
            action = _OPS.get(meta.op.value)
            if action and not meta.type.startswith(_ENGINE_OWN):
                name = resource_name(meta.urn)
                if self.preview:
                    forced = tuple(meta.keys or ()) if action == "replace" else tuple(meta.diffs or ())
                    reason = "the provider requires replacement" if action == "replace" else ""
                    self.changes.append(ResourceChange(name, action, meta.type, reason, forced))
                    log.resource(name, f"will {action}", ", ".join(forced), type=meta.type)
                else:
                    self.started = True
                    log.resource(name, "in progress", action, type=meta.type)
        elif event.res_outputs_event:
            meta = event.res_outputs_event.metadata
            action = _OPS.get(meta.op.value)
            if self.refresh:
                self._drift(meta)
            elif meta.type == STACK_TYPE and self.preview:
                old = meta.old.outputs if meta.old else {}
                new = meta.new.outputs if meta.new else {}
                self.outputs_changed = self.outputs_changed or old != new
            elif action and not self.preview and not meta.type.startswith(_ENGINE_OWN):
                log.resource(resource_name(meta.urn), "done", action, type=meta.type)
        elif event.res_op_failed_event:
            meta = event.res_op_failed_event.metadata
            log.resource(resource_name(meta.urn), "failed", type=meta.type)

    def _drift(self, meta: StepEventMetadata) -> None:
        """A refresh step that would update the state (the resource changed outside Pulumi) or delete it from the
        state (the resource is gone)."""
        if meta.op.value not in ("update", "delete") or meta.type.startswith(_ENGINE_OWN):
            return
        name = resource_name(meta.urn)
        deleted = meta.op.value == "delete"
        names = () if deleted else changed_properties(meta)
        self.drifted.append(DriftedResource(name, meta.type, names, deleted))
        log.resource(name, "drifted", "deleted" if deleted else f"changed: {', '.join(names) or '?'}", type=meta.type)

    def _program_line(self, line: str) -> None:
        """A Python traceback the program prints (the engine sends it a line per event) goes to the debug log: a
        program's failure is reported as its exception and line (errors.classify), and once an update has
        failed, a current engine interrupts the program, whose KeyboardInterrupt is no failure of its own."""
        if _TRACEBACK_START.match(line) or (self.traceback and _TRACEBACK_BODY.match(line)):
            self.traceback = True
            log.debug(line)
        elif self.traceback:
            self.traceback = False  # the exception's own line ends it
            log.debug(line)
        else:
            log.engine_line("pulumi", line)


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def changed_properties(meta: StepEventMetadata) -> tuple[str, ...]:
    """The top-level properties a refresh step changes: the engine's diffs where the provider gives them; else
    (dynamic providers give none) the outputs read against the state's outputs, and against the state's inputs
    (after an earlier refresh wrote the drift into the outputs, the inputs still hold what the program said).
    Secret values are masked alike in both, so a changed secret is not named."""
    named = list(meta.diffs or ()) or [re.split(r"[.\[]", path, maxsplit=1)[0] for path in meta.detailed_diff or {}]
    if not named:
        old = (meta.old.outputs if meta.old else None) or {}
        said = (meta.old.inputs if meta.old else None) or {}
        new = (meta.new.outputs if meta.new else None) or {}
        named = [key for key in {*old, *new} if old.get(key) != new.get(key)]
        named += [key for key, value in said.items() if key in new and new[key] != value]
    return tuple(sorted({name for name in named if name and not name.startswith("__")}))


def stack_name(ctx: StackContext) -> str:
    """IAC_RUNNER_STACK_NAME fitted to Pulumi's rules for stack names."""
    return sanitize(ctx.stack_name, allowed="a-zA-Z0-9._-", max_length=100, first="a-zA-Z0-9_")


@dataclass(frozen=True)
class Previewed:
    summary: ChangeSummary
    #: Something would change (a resource, an output, pending operations to finish): an `up` must run.
    update_needed: bool


class Session:
    """One run's workspace and stack; the Automation API's engine processes run through the process seam."""

    def __init__(self, ctx: StackContext, project: Project | None = None, create: bool = True) -> None:
        self.ctx = ctx
        self.project = project or Project.load(ctx.folder)
        self.create = create
        self.name = stack_name(ctx)
        self.cli = engine.find_cli_or_fail()
        self.engine = engine.probe_or_fail(self.cli)
        self.engine.check(self.project.options, where=f"{self.project.path}: runtime.options")
        log.info(self.engine.describe())
        ctx.events.engine_version("pulumi", self.engine.cli_version)
        # Only now: the probe has checked that the SDK has what the command needs.
        from iac_runner.backends.pulumi.command import SeamCommand

        self.command: SeamCommand = SeamCommand(self.cli, self.engine.cli_version, ctx.deadline)
        self.env = self._environment()
        self.scene = Scene(self.project.name, self.name, ctx.folder, ctx.state_url, self.env["PULUMI_HOME"])
        self.stack: Stack | None = None

    def __enter__(self) -> Session:
        engine.check_passphrase(self.env, bool(self.ctx.secret_inputs))
        # The first reach for the state backend: a fault that outlasts its SDK's own retries is tried again.
        self.stack = Retry(self.ctx.retries, self.ctx.deadline).run(self._stack, "pulumi stack select")
        if self.create:
            self.configure()
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to undo: every engine process has ended with its command."""

    # -- environment -------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = engine.base_env(dict(self.ctx.env), self.cli)
        env["PULUMI_HOME"] = str(engine.usable_home(Path(env.get("PULUMI_HOME") or engine.pulumi_home())))
        # The program's modules are the user's (or a symlink to them): no bytecode written beside them.
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        if self.project.backend_url is None and self.ctx.state_url:
            env["PULUMI_BACKEND_URL"] = engine.backend_url(self.ctx.state_url, env)
            engine.make_state_dir(self.ctx.state_url)
        venv = self.project.options.get("virtualenv")
        if venv:
            # Called while the session's environment is being built: `env` is that environment.
            made = engine.virtualenv(
                self.ctx.folder, Path(str(venv)), lambda argv, doing: self._run(argv, doing, env=env)
            )
            engine.activate(env, made)
        elif "PULUMI_PYTHON_CMD" not in env:
            engine.activate(env, None)
        return env

    def _run(
        self, argv: list[str], doing: str, stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> process.Completed:
        done = process.run(
            argv,
            engine="pulumi",
            deadline=self.ctx.deadline,
            cwd=self.ctx.folder,
            env=self.env if env is None else env,
            on_stdout=log.debug,
            on_stderr=log.debug,
            doing=doing,
            stdin=stdin,
        )
        if done.returncode != 0:
            raise classify(done.stderr + done.stdout, self.scene, doing)
        return done

    # -- stack -------------------------------------------------------------------------------------------

    def _stack(self) -> Stack:
        from pulumi import automation as auto

        options = auto.LocalWorkspaceOptions(
            work_dir=str(self.ctx.folder),
            env_vars=self.env,
            pulumi_home=self.env["PULUMI_HOME"],
            secrets_provider="passphrase",
            pulumi_command=self.command,
        )
        with self._translated("selecting the stack"):
            if self.create:
                stack = auto.create_or_select_stack(self.name, work_dir=str(self.ctx.folder), opts=options)
            else:
                try:
                    stack = auto.select_stack(self.name, work_dir=str(self.ctx.folder), opts=options)
                except auto.StackNotFoundError:
                    raise Gone() from None
        log.info(f"stack {self.name} of project {self.project.name}" + engine.state_note(self.env))
        if self.ctx.options.cancel_lock:
            self.cancel_lock(stack)
        return stack

    def configure(self) -> None:
        """Inputs as stack config `<project>:<key>`: plain values typed in Pulumi.<stack>.yaml, secrets encrypted
        (in the run's own view of the project: the user's folder is never written)."""
        path = self.ctx.folder / f"Pulumi.{self.name}.yaml"
        settings = yamlfile.load(path, path.name) if path.is_file() else {}
        settings = settings if isinstance(settings, dict) else {}
        config = settings.setdefault("config", {}) or {}
        settings["config"] = config
        for key, value in self.ctx.inputs.items():
            config[self._key(key)] = value
        for key in self.ctx.secret_inputs:
            config.pop(self._key(key), None)
        write_atomic(path, yamlfile.dump(settings), durable=False)
        for key, value in self.ctx.secret_inputs.items():
            text = value if isinstance(value, str) else json.dumps(value)
            self._run(
                [
                    self.cli,
                    "config",
                    "set",
                    "--secret",
                    "--stack",
                    self.name,
                    "--non-interactive",
                    "--",
                    self._key(key),
                ],
                f"setting secret config {key}",
                stdin=text,
            )

    def _key(self, key: str) -> str:
        return key if ":" in key else f"{self.project.name}:{key}"

    def cancel_lock(self, stack: Stack) -> None:
        log.warning(f"--cancel-lock: cancelling any update or lock held on stack {self.name} (pulumi cancel)")
        try:
            with self._translated("cancelling the stack's lock"):
                stack.cancel()
        except RunnerError as exc:  # the run goes on; a lock still held then fails it with its own message
            log.warning(f"--cancel-lock: pulumi cancel failed: {exc.summary}")

    # -- verbs ---------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the real infrastructure into the state first (what `up --refresh` does), so that the update
        corrects what changed behind the runner's back (IAC_RUNNER_REFRESH)."""
        assert self.stack is not None
        log.step("pulumi refresh")
        progress = Progress()
        with self.ctx.events.phase("refresh"), self._translated("refreshing the state", progress):
            self.stack.refresh(on_event=engine.guarded(progress), on_output=log.debug)

    def drift(self) -> Drift:
        """A refresh preview (`pulumi refresh --preview-only`): the providers read the real infrastructure and the
        engine compares it with the state, which it does not write."""
        with self.ctx.events.phase("refresh"):
            found = Retry(self.ctx.retries, self.ctx.deadline).run(self._drift, "pulumi refresh --preview-only")
        log.info(f"drift: {len(found.resources)} resource(s) differ from the state" if found.resources else "no drift")
        return found

    def _drift(self) -> Drift:
        assert self.stack is not None
        log.step("pulumi refresh --preview-only")
        progress = Progress(refresh=True)
        with self._translated("reading the real infrastructure", progress):
            self.stack.preview_refresh(on_event=engine.guarded(progress), on_output=log.debug)
        return Drift(tuple(progress.drifted))

    def preview(self) -> Previewed:
        with self.ctx.events.phase("plan"):
            return Retry(self.ctx.retries, self.ctx.deadline).run(self._preview, "pulumi preview")

    def _preview(self) -> Previewed:
        assert self.stack is not None
        log.step("pulumi preview")
        progress = Progress(preview=True)
        with self._translated("previewing", progress):
            self.stack.preview(on_event=engine.guarded(progress), on_output=log.debug)
        summary = ChangeSummary(tuple(progress.changes))
        self.ctx.events.changes(summary)
        log.info(f"plan: {summary}" + (", outputs change" if progress.outputs_changed and not summary.changes else ""))
        return Previewed(summary, bool(summary.changes or progress.outputs_changed or progress.pending))

    def up(self) -> dict[str, Any]:
        """Update the stack; returns its outputs' plain values, which the Automation API reads after `up`."""
        with self.ctx.events.phase("apply"):
            return Retry(self.ctx.retries, self.ctx.deadline).run(self._up, "pulumi up")

    def _up(self) -> dict[str, Any]:
        assert self.stack is not None
        log.step("pulumi up")
        progress = Progress()
        with self._translated("updating the stack", progress):
            result = self.stack.up(on_event=engine.guarded(progress), on_output=log.debug)
        changes = {k: v for k, v in counts(result.summary.resource_changes).items() if k != "same"}
        log.info("no changes: the infrastructure matches the program" if not changes else f"changes: {changes}")
        if progress.pending:
            self.clear_pending_operations()
        return {name: output.value for name, output in result.outputs.items()}

    def destroy(self) -> None:
        assert self.stack is not None
        log.step("pulumi destroy")
        progress = Progress()
        with self.ctx.events.phase("destroy"), self._translated("destroying the stack", progress):
            result = self.stack.destroy(on_event=engine.guarded(progress), on_output=log.debug)
        deleted = counts(result.summary.resource_changes).get("delete", 0)
        log.info(f"destroyed {deleted} resource(s)" if deleted else "the stack holds no resources: nothing to destroy")
        if progress.pending:
            self.clear_pending_operations()

    def clear_pending_operations(self) -> None:
        """After a run that succeeded despite pending operations: they are done or moot now, but pulumi 3.79
        keeps them in the state (and warns on every run) until an interactive `pulumi refresh`. Clear them the
        way an operator would (`stack export`, drop them, `stack import`), secrets staying encrypted and
        passing through stdin and stdout only."""
        base = [self.cli, "stack", "--stack", self.name, "--non-interactive"]
        exported = json.loads(self._run([*base[:2], "export", *base[2:]], "reading the state").stdout)
        pending = exported.get("deployment", {}).get("pending_operations") or []
        if not pending:
            return
        exported["deployment"]["pending_operations"] = []
        self._run([*base[:2], "import", *base[2:]], "clearing pending operations", stdin=json.dumps(exported))
        log.info(f"cleared {len(pending)} pending operation(s) from the state: this run finished the stack's work")

    def outputs(self, plain: dict[str, Any] | None = None) -> list[Output]:
        """Outputs with the engine's secret flag; a value holding a secret anywhere is secret whole (the masked
        view shows where: the Automation API's own flag looks at the top level only)."""
        base = [self.cli, "stack", "output", "--json", "--stack", self.name, "--non-interactive"]
        with self.ctx.events.phase("outputs"):
            masked = json.loads(self._run(base, "reading outputs").stdout or "{}")
            if plain is None:
                plain = json.loads(self._run([*base, "--show-secrets"], "reading outputs").stdout or "{}")
        return [Output(name, value, holds_secret(masked.get(name))) for name, value in plain.items()]

    @contextlib.contextmanager
    def _translated(self, doing: str, progress: Progress | None = None) -> Iterator[None]:
        """Automation API errors as the runner's: config, locks, passphrases and program failures by name."""
        from pulumi.automation.errors import CommandError

        self.command.doing = doing
        try:
            yield
        except CommandError as exc:
            text = "\n".join([*(progress.errors if progress else []), str(exc)])
            error = classify(text, self.scene, doing, progress.resource_errors if progress else ())
            error.diagnostics = tuple(progress.diagnostics) if progress else ()
            if progress is None or not progress.started:
                error.transient = error.transient or (transient_reason(text) or "" if error.exit_code != 2 else "")
            raise error from None


class Gone(Exception):
    """The stack does not exist (destroy and outputs treat it as empty)."""


def counts(changes: Mapping[Any, int] | None) -> dict[str, int]:
    """The engine's per-operation counts keyed by the operation's name."""
    return {str(getattr(op, "value", op)): count for op, count in (changes or {}).items()}


def holds_secret(masked: Any) -> bool:
    if isinstance(masked, dict):
        return any(holds_secret(v) for v in masked.values())
    if isinstance(masked, list):
        return any(holds_secret(v) for v in masked)
    return bool(masked == SECRET_MASK)
