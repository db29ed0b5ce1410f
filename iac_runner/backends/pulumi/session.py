"""One Pulumi run: a LocalWorkspace on the project folder and the stack, configured from the inputs, with the
engine's events as progress and its failures in the runner's words.

Inputs become stack config in `Pulumi.<stack>.yaml` (plain values written with their types, secret values
encrypted by `pulumi config set --secret`, which reads them from stdin, never from an argument).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from iac_runner.backends.base import ChangeSummary, Output, ResourceChange, StackContext
from iac_runner.backends.pulumi import engine
from iac_runner.backends.pulumi.errors import Scene, classify
from iac_runner.backends.pulumi.project import Project
from iac_runner.common import process
from iac_runner.common.errors import RunnerError
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack

SECRET_MASK = "[secret]"  # noqa: S105 - what `pulumi stack output` prints for a secret
# Engine operations as plan actions; a replacement's own create/delete steps are part of its "replace".
_OPS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
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
    #: The engine found pending operations in the state: operations a killed run never finished.
    pending: list[str] = field(default_factory=list)

    def __call__(self, event: EngineEvent) -> None:
        if event.diagnostic_event:
            diagnostic = event.diagnostic_event
            message = diagnostic.message.rstrip()
            if diagnostic.severity == "error":
                self.errors.append(message)
                if diagnostic.urn and "::pulumi:pulumi:Stack::" not in diagnostic.urn:
                    self.resource_errors.append((resource_name(diagnostic.urn), message))
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
                    log.engine_line("pulumi", line)
        elif event.resource_pre_event:
            meta = event.resource_pre_event.metadata
            action = _OPS.get(meta.op.value)
            if action and not meta.type.startswith("pulumi:pulumi:"):
                name = resource_name(meta.urn)
                if self.preview:
                    self.changes.append(ResourceChange(name, action, meta.type))
                    log.resource(name, f"will {action}", type=meta.type)
                else:
                    log.resource(name, "in progress", action, type=meta.type)
        elif event.res_outputs_event:
            meta = event.res_outputs_event.metadata
            action = _OPS.get(meta.op.value)
            if action and not self.preview and not meta.type.startswith("pulumi:pulumi:"):
                log.resource(resource_name(meta.urn), "done", action, type=meta.type)
        elif event.res_op_failed_event:
            meta = event.res_op_failed_event.metadata
            log.resource(resource_name(meta.urn), "failed", type=meta.type)


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Session:
    """One run's workspace and stack, with the engine's processes supervised."""

    def __init__(self, ctx: StackContext, project: Project | None = None, create: bool = True) -> None:
        self.ctx = ctx
        self.project = project or Project.load(ctx.folder)
        self.create = create
        self.name = sanitize(ctx.stack_name, allowed="a-zA-Z0-9._-", max_length=100, first="a-zA-Z0-9_")
        self.cli = engine.find_cli_or_fail()
        self.env = self._environment()
        self.scene = Scene(self.project.name, self.name, ctx.folder, ctx.state_url, self.env["PULUMI_HOME"])
        self.stack: Stack | None = None
        self._patch: contextlib.ExitStack | None = None

    def __enter__(self) -> Session:
        engine.check_passphrase(self.env, bool(self.ctx.secret_inputs))
        self._patch = contextlib.ExitStack()
        self._patch.enter_context(engine.tracked_engine_processes())
        self._patch.enter_context(engine.finite_event_watch())
        try:
            self.stack = self._stack()
        except BaseException:
            self._patch.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._patch is not None:
            self._patch.close()

    # -- environment -------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = engine.base_env(dict(self.ctx.env), self.cli)
        env.setdefault("PULUMI_HOME", str(engine.pulumi_home()))
        Path(env["PULUMI_HOME"]).mkdir(parents=True, exist_ok=True)
        if self.project.backend_url is None and self.ctx.state_url:
            env["PULUMI_BACKEND_URL"] = engine.backend_url(self.ctx.state_url, env)
            engine.make_state_dir(self.ctx.state_url)
        venv = self.project.options.get("virtualenv")
        if venv:
            # Called while the session's environment is being built: `env` is that environment.
            engine.virtualenv(self.ctx.folder, Path(str(venv)), lambda argv, doing: self._run(argv, doing, env=env))
        else:
            # No virtualenv option: the program runs with the runner's own Python (which has the SDK).
            env.setdefault("PULUMI_PYTHON_CMD", sys.executable)
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
        """Inputs as stack config `<project>:<key>`: plain values typed in Pulumi.<stack>.yaml, secrets encrypted."""
        path = self.ctx.folder / f"Pulumi.{self.name}.yaml"
        settings = yaml.safe_load(path.read_text()) if path.is_file() else {}
        settings = settings if isinstance(settings, dict) else {}
        config = settings.setdefault("config", {}) or {}
        settings["config"] = config
        for key, value in self.ctx.inputs.items():
            config[self._key(key)] = value
        for key in self.ctx.secret_inputs:
            config.pop(self._key(key), None)
        write_atomic(path, yaml.safe_dump(settings, sort_keys=False))
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

    def preview(self) -> ChangeSummary:
        assert self.stack is not None
        self.configure()
        log.step("pulumi preview")
        progress = Progress(preview=True)
        with self._translated("previewing", progress):
            self.stack.preview(on_event=progress, on_output=log.debug)
        summary = ChangeSummary(tuple(progress.changes))
        log.info(f"plan: {summary}")
        return summary

    def up(self) -> dict[str, Any]:
        """Update the stack; returns its outputs' plain values, which the Automation API reads after `up`."""
        assert self.stack is not None
        self.configure()
        log.step("pulumi up")
        progress = Progress()
        with self._translated("updating the stack", progress):
            result = self.stack.up(on_event=progress, on_output=log.debug)
        changes = {k: v for k, v in counts(result.summary.resource_changes).items() if k != "same"}
        log.info("no changes: the infrastructure matches the program" if not changes else f"changes: {changes}")
        if progress.pending:
            self.clear_pending_operations()
        return {name: output.value for name, output in result.outputs.items()}

    def destroy(self) -> None:
        assert self.stack is not None
        log.step("pulumi destroy")
        progress = Progress()
        with self._translated("destroying the stack", progress):
            result = self.stack.destroy(on_event=progress, on_output=log.debug)
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
        masked = json.loads(self._run(base, "reading outputs").stdout or "{}")
        if plain is None:
            plain = json.loads(self._run([*base, "--show-secrets"], "reading outputs").stdout or "{}")
        return [Output(name, value, holds_secret(masked.get(name))) for name, value in plain.items()]

    @contextlib.contextmanager
    def _translated(self, doing: str, progress: Progress | None = None) -> Iterator[None]:
        """Automation API errors as the runner's: config, locks, passphrases and program failures by name."""
        from pulumi.automation.errors import CommandError

        try:
            with process.supervised(self.ctx.deadline, doing):
                yield
        except CommandError as exc:
            text = "\n".join([*(progress.errors if progress else []), str(exc)])
            raise classify(text, self.scene, doing, progress.resource_errors if progress else ()) from None


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
