"""Pulumi through its Automation API: a LocalWorkspace on the checked-out project folder, the real CLI and
Python language host.

Inputs become stack config in `Pulumi.<stack>.yaml` (plain values written with their types, secret values
encrypted by `pulumi config set --secret`, which reads them from stdin, never from an argument). Engine
processes the Automation API starts are tracked (`process.TrackedPopen`) so that the run's deadline and
signals reach them; progress comes from the engine's events.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import yaml

from backends.base import ChangeSummary, Declared, EngineUnavailable, InputSpec, ResourceChange, StackContext
from runner import process
from runner.errors import ConfigError, EngineError, RunnerError
from runner.files import write_atomic
from runner.log import log
from runner.naming import sanitize
from runner.outputs import Output
from runner.secrets import REGISTRY
from runner.settings import StackFile

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.yml")
TOOLS = Path(__file__).resolve().parent.parent / ".tools"
SECRET_MASK = "[secret]"  # noqa: S105 - what `pulumi stack output` prints for a secret
# Engine operations as plan actions; a replacement's own create/delete steps are part of its "replace".
_OPS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
_MISSING_CONFIG = re.compile(r"Missing required configuration variable '([^']+)'")
_TRACEBACK_FILE = re.compile(r'File "([^"]+)", line (\d+)')
_GRPC_WRAPPER = re.compile(r"^Exception calling application: ")
_MISSING_PLUGIN = re.compile(
    r"Could not automatically download and install (\w+) plugin 'pulumi-\w+-([\w.-]+)' at version (v[\w.+-]+)"
)
_KILLED = re.compile(r"^\s*code: -(\d+)\s*$", re.MULTILINE)  # the Automation API's report of a signalled CLI
_SIGNALS = {int(s) for s in signal.Signals}
_PENDING = re.compile(r"with \d+ pending operations from previous deployment")
_PENDING_OP = re.compile(r"^\s*\* (\S+), interrupted while (\w+)", re.MULTILINE)


def _find_cli() -> str:
    found = shutil.which("pulumi") or shutil.which("pulumi", path=str(TOOLS / "bin"))
    if found is None:
        raise EngineUnavailable(
            "'pulumi' is not on PATH: run `make tools` (builds the pinned Pulumi CLI and Python language host into "
            ".tools/bin) or install the Pulumi CLI"
        )
    return found


@dataclass(frozen=True)
class Project:
    """What the runner needs of `Pulumi.yaml`."""

    path: Path
    name: str
    runtime: str
    options: Mapping[str, Any]
    backend_url: str | None
    #: The program's folder or file (`main:` in Pulumi.yaml), relative to the project folder.
    main: str | None = None

    @classmethod
    def load(cls, folder: Path) -> Project:
        path = next((folder / n for n in PROJECT_FILES if (folder / n).is_file()), folder / PROJECT_FILES[0])
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(
                f"{path.name} is not valid YAML: {getattr(exc, 'problem', exc)}.",
                where=f"{path}:{mark.line + 1}" if mark else str(path),
                fix="Fix the YAML syntax of the project file.",
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or "runtime" not in data:
            raise ConfigError(
                f"{path.name} must be a mapping with at least `name` and `runtime`.",
                where=str(path),
                fix="Write e.g. `name: my-project` and `runtime: python`.",
            )
        runtime = data["runtime"]
        name, options = (runtime, {}) if isinstance(runtime, str) else (runtime.get("name"), runtime.get("options"))
        if name != "python":
            raise ConfigError(
                f"The Pulumi project's runtime is {name!r}; the pulumi backend runs Python programs only for now.",
                where=f"{path}: runtime",
                fix="Use `runtime: python`, or run this project with the Pulumi CLI directly.",
            )
        unsupported = sorted(set(options or {}) - {"virtualenv"})
        if unsupported:
            raise ConfigError(
                f"The runtime option {unsupported[0]!r} is not supported by the pinned Python language host.",
                where=f"{path}: runtime.options",
                fix="Use `virtualenv: <dir>` (with a requirements.txt), or no options to run with the runner's Python.",
            )
        backend = data.get("backend")
        main = data.get("main")
        return cls(
            path,
            data["name"],
            name,
            options or {},
            backend.get("url") if isinstance(backend, dict) else None,
            main if isinstance(main, str) else None,
        )


class PulumiBackend:
    name = "pulumi"
    companions = ("Pulumi.*.yaml", "Pulumi.*.yml")

    def detect(self, folder: Path) -> str | None:
        return next((n for n in PROJECT_FILES if (folder / n).is_file()), None)

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        return _declared_config(folder)

    def needs_state(self, folder: Path) -> bool:
        with contextlib.suppress(ConfigError):
            return Project.load(folder).backend_url is None
        return True

    def engine_version(self) -> str:
        cli = _find_cli()
        done = process.run(
            [cli, "version"],
            engine="pulumi",
            deadline=process.Deadline(30),
            env=_base_env(dict(os.environ), cli),
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
        _check_passphrase(dict(ctx.env), ctx)
        _check_program(ctx.folder, project)
        log.info(f"Pulumi project {project.name!r} is valid (runtime python)")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        project = Project.load(ctx.folder)
        _check_program(ctx.folder, project)
        with _Session(ctx, project) as session:
            return session.preview()

    def apply(self, ctx: StackContext) -> list[Output]:
        project = Project.load(ctx.folder)
        _check_program(ctx.folder, project)  # a syntax error is bad input (exit 2), found before anything changes
        with _Session(ctx, project) as session:
            return session.outputs(plain=session.up())

    def destroy(self, ctx: StackContext) -> None:
        try:
            with _Session(ctx, create=False) as session:
                session.destroy()
        except _Gone:
            log.info("the stack does not exist: nothing to destroy")

    def outputs(self, ctx: StackContext) -> list[Output]:
        try:
            with _Session(ctx, create=False) as session:
                return session.outputs()
        except _Gone:
            raise EngineError(
                f"Stack {ctx.stack_name} does not exist, so it has no outputs.",
                fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
            ) from None


@dataclass
class _Progress:
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
                    self.resource_errors.append((_name(diagnostic.urn), message))
            elif diagnostic.severity == "warning" and _PENDING.search(message):
                # Pulumi's own advice (an interactive `pulumi refresh`) does not fit an unattended run.
                self.pending = [f"{_name(urn)} interrupted while {op}" for urn, op in _PENDING_OP.findall(message)]
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
                name = _name(meta.urn)
                if self.preview:
                    self.changes.append(ResourceChange(name, action, meta.type))
                    log.resource(name, f"will {action}", type=meta.type)
                else:
                    log.resource(name, "in progress", action, type=meta.type)
        elif event.res_outputs_event:
            meta = event.res_outputs_event.metadata
            action = _OPS.get(meta.op.value)
            if action and not self.preview and not meta.type.startswith("pulumi:pulumi:"):
                log.resource(_name(meta.urn), "done", action, type=meta.type)
        elif event.res_op_failed_event:
            meta = event.res_op_failed_event.metadata
            log.resource(_name(meta.urn), "failed", type=meta.type)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class _Session:
    """One run's workspace and stack, with the engine's processes supervised."""

    def __init__(self, ctx: StackContext, project: Project | None = None, create: bool = True) -> None:
        self.ctx = ctx
        self.project = project or Project.load(ctx.folder)
        self.create = create
        self.name = sanitize(ctx.stack_name, allowed="a-zA-Z0-9._-", max_length=100, first="a-zA-Z0-9_")
        self.cli = _find_cli_or_fail()
        self.env = self._environment()
        self.stack: Stack | None = None
        self._patch: contextlib.ExitStack | None = None

    def __enter__(self) -> _Session:
        _check_passphrase(self.env, self.ctx)
        self._patch = contextlib.ExitStack()
        self._patch.enter_context(_tracked_engine_processes())
        self._patch.enter_context(_finite_event_watch())
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
        env = _base_env(dict(self.ctx.env), self.cli)
        env.setdefault("PULUMI_HOME", str(_pulumi_home()))
        Path(env["PULUMI_HOME"]).mkdir(parents=True, exist_ok=True)
        if self.project.backend_url is None and self.ctx.state_url:
            env["PULUMI_BACKEND_URL"] = _backend_url(self.ctx.state_url, env)
            _make_state_dir(self.ctx.state_url)
        venv = self.project.options.get("virtualenv")
        if venv:
            self._virtualenv(Path(str(venv)), env)
        else:
            # No virtualenv option: the program runs with the runner's own Python (which has the SDK).
            env.setdefault("PULUMI_PYTHON_CMD", sys.executable)
        return env

    def _virtualenv(self, venv: Path, env: dict[str, str]) -> None:
        """The project's virtualenv, made the way `pulumi install` would and reused while its requirements stay
        the same: a cached venv per requirements file, linked where Pulumi.yaml expects it."""
        requirements = self.ctx.folder / "requirements.txt"
        target = venv if venv.is_absolute() else self.ctx.folder / venv
        if (target / "bin" / "python").exists():
            return
        digest = hashlib.sha256(requirements.read_bytes() if requirements.is_file() else b"").hexdigest()[:16]
        cached = _cache_root() / "venvs" / f"{digest}-py{sys.version_info.major}{sys.version_info.minor}"
        if not (cached / ".complete").exists():
            log.step(f"creating the project's virtualenv from {requirements.name} (cached for reuse)")
            shutil.rmtree(cached, ignore_errors=True)
            # Called while the session's environment is being built: `env` is that environment.
            self._run([sys.executable, "-m", "venv", str(cached)], "creating the virtualenv", env=env)
            if requirements.is_file():
                pip = [str(cached / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
                self._run([*pip, "-r", str(requirements)], "installing the project's requirements", env=env)
            (cached / ".complete").touch()
        else:
            log.info(f"reusing the cached virtualenv for {requirements.name} ({digest})")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else shutil.rmtree(target)
        target.symlink_to(cached, target_is_directory=True)

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
            raise _classify(done.stderr + done.stdout, self, doing)
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
                    raise _Gone() from None
        log.info(f"stack {self.name} of project {self.project.name}" + _state_note(self.env))
        if self.ctx.cancel_lock:
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
        progress = _Progress(preview=True)
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
        progress = _Progress()
        with self._translated("updating the stack", progress):
            result = self.stack.up(on_event=progress, on_output=log.debug)
        changes = {k: v for k, v in _counts(result.summary.resource_changes).items() if k != "same"}
        log.info("no changes: the infrastructure matches the program" if not changes else f"changes: {changes}")
        if progress.pending:
            self.clear_pending_operations()
        return {name: output.value for name, output in result.outputs.items()}

    def destroy(self) -> None:
        assert self.stack is not None
        log.step("pulumi destroy")
        progress = _Progress()
        with self._translated("destroying the stack", progress):
            result = self.stack.destroy(on_event=progress, on_output=log.debug)
        deleted = _counts(result.summary.resource_changes).get("delete", 0)
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
        return [Output(name, value, _holds_secret(masked.get(name))) for name, value in plain.items()]

    @contextlib.contextmanager
    def _translated(self, doing: str, progress: _Progress | None = None) -> Iterator[None]:
        """Automation API errors as the runner's: config, locks, passphrases and program failures by name."""
        from pulumi.automation.errors import CommandError

        try:
            with process.supervised(self.ctx.deadline, doing):
                yield
        except CommandError as exc:
            text = "\n".join([*(progress.errors if progress else []), str(exc)])
            raise _classify(text, self, doing, progress.resource_errors if progress else ()) from None


class _Gone(Exception):
    """The stack does not exist (destroy and outputs treat it as empty)."""


@contextlib.contextmanager
def _finite_event_watch() -> Iterator[None]:
    """The Automation API (3.79) reads the engine's event log in a non-daemon thread that stops only at the
    engine's cancel event. A command that fails before the engine starts (a locked stack, a wrong passphrase, a
    missing state bucket) never writes one: the thread then polls forever and the runner never exits. This
    watcher also stops once the command is over (the API's cleanup runs after the CLI exited), and reads
    whole lines only (the CLI may be halfway through writing one)."""
    from pulumi.automation import EngineEvent, _stack

    original_watch, original_cleanup = vars(_stack)["_watch_logs"], vars(_stack)["_cleanup"]
    finished: dict[threading.Thread, threading.Event] = {}

    def watch(filename: str, callback: Any) -> None:
        done = finished.setdefault(threading.current_thread(), threading.Event())
        pending = ""
        with open(filename, encoding="utf-8") as events:
            while True:
                over = done.is_set()  # read before the file is read: then nothing more is coming
                pending += events.readline()
                if not pending.endswith("\n") and not (over and pending):
                    if over:
                        return
                    time.sleep(0.1)
                    continue
                line, pending = pending, ""
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    event = EngineEvent.from_json(json.loads(line))
                    try:
                        callback(event)
                    except Exception as exc:  # a progress callback must not kill the watcher
                        log.debug(f"engine event not shown: {type(exc).__name__}: {exc}")
                    if event.cancel_event:
                        return

    def cleanup(temp_dir: Any, thread: threading.Thread | None, on_exit_fn: Any = None) -> None:
        if thread is not None:
            finished.setdefault(thread, threading.Event()).set()
        original_cleanup(temp_dir, thread, on_exit_fn)
        if thread is not None:
            finished.pop(thread, None)

    setattr(_stack, "_watch_logs", watch)  # noqa: B010
    setattr(_stack, "_cleanup", cleanup)  # noqa: B010
    try:
        yield
    finally:
        setattr(_stack, "_watch_logs", original_watch)  # noqa: B010
        setattr(_stack, "_cleanup", original_cleanup)  # noqa: B010


@contextlib.contextmanager
def _tracked_engine_processes() -> Iterator[None]:
    """Route the Automation API's engine processes through the runner's tracking (deadline, signals)."""
    from pulumi.automation import _cmd

    original = vars(_cmd)["subprocess"]
    # Only this module's view of `subprocess` changes; the rest of the process keeps the real one.
    setattr(_cmd, "subprocess", SimpleNamespace(**{**vars(original), "Popen": process.TrackedPopen}))  # noqa: B010
    try:
        yield
    finally:
        setattr(_cmd, "subprocess", original)  # noqa: B010


def _counts(changes: Mapping[Any, int] | None) -> dict[str, int]:
    """The engine's per-operation counts keyed by the operation's name."""
    return {str(getattr(op, "value", op)): count for op, count in (changes or {}).items()}


def _holds_secret(masked: Any) -> bool:
    if isinstance(masked, dict):
        return any(_holds_secret(v) for v in masked.values())
    if isinstance(masked, list):
        return any(_holds_secret(v) for v in masked)
    return bool(masked == SECRET_MASK)


def _base_env(env: dict[str, str], cli: str) -> dict[str, str]:
    """The engine's environment: the pinned CLI's folder first on PATH (its language host and the dynamic
    provider's plugin live beside it), no update checks."""
    env["PATH"] = f"{Path(cli).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    env.setdefault("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
    return env


def _check_passphrase(env: dict[str, str], ctx: StackContext) -> None:
    """The passphrase secrets provider needs PULUMI_CONFIG_PASSPHRASE as soon as there is a secret to encrypt."""
    if "PULUMI_CONFIG_PASSPHRASE" in env or "PULUMI_CONFIG_PASSPHRASE_FILE" in env:
        REGISTRY.add(env.get("PULUMI_CONFIG_PASSPHRASE", ""))
        return
    if ctx.secret_inputs:
        raise ConfigError(
            "PULUMI_CONFIG_PASSPHRASE is not set, but the stack has secret inputs to encrypt.",
            where="the job's environment",
            fix="Set PULUMI_CONFIG_PASSPHRASE (from a secret) to the stack's passphrase; keep it the same for every "
            "run of the stack.",
        )
    log.warning("PULUMI_CONFIG_PASSPHRASE is not set: the stack's secrets are encrypted with an empty passphrase")
    env["PULUMI_CONFIG_PASSPHRASE"] = ""


def _check_program(folder: Path, project: Project) -> None:
    main = folder / (project.main or ".")
    main = main / "__main__.py" if main.is_dir() else main
    if not main.is_file():
        raise ConfigError(
            f"The Pulumi project has no program: {main.name} is missing.",
            where=str(main.parent),
            fix="Add the program's __main__.py (or point `main:` in Pulumi.yaml at it).",
        )
    try:
        compile(main.read_text(), str(main), "exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"The Pulumi program has a syntax error: {exc.msg}.",
            where=f"{main.name}:{exc.lineno}",
            fix="Fix the Python syntax at that line.",
        ) from None


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iac-driver-runner"


def _pulumi_home() -> Path:
    return TOOLS / "pulumi-home" if TOOLS.is_dir() else _cache_root() / "pulumi-home"


def _backend_url(state_url: str, env: Mapping[str, str]) -> str:
    parts = urlsplit(state_url)
    if parts.scheme != "s3":
        return state_url
    query: dict[str, str] = {"region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        # An emulator or S3-compatible store.
        point = urlsplit(endpoint)
        query.update({"endpoint": point.netloc, "s3ForcePathStyle": "true"})
        if point.scheme == "http":
            query["disableSSL"] = "true"
    return f"s3://{parts.netloc}{parts.path.rstrip('/')}?{urlencode(query)}"


def _make_state_dir(state_url: str) -> None:
    """A `file://` state folder is created on first use, as tofu does (pulumi refuses a missing one)."""
    parts = urlsplit(state_url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        try:
            Path(unquote(parts.path)).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"The state folder {parts.path} cannot be created: {exc.strerror}.",
                where=f"IAC_RUNNER_STATE_URL={state_url}",
                fix="Point IAC_RUNNER_STATE_URL at a writable folder (file:///abs/dir) or an S3 bucket.",
            ) from None


def _state_note(env: Mapping[str, str]) -> str:
    url = env.get("PULUMI_BACKEND_URL")
    return f", state at {url.split('?')[0]}" if url else ""


def _find_cli_or_fail() -> str:
    try:
        return _find_cli()
    except EngineUnavailable as exc:
        raise ConfigError(f"The Pulumi engine is not available: {exc}.", fix="See `iac-runner backends`.") from None


def _classify(text: str, session: _Session, doing: str, resource_errors: Sequence[tuple[str, str]] = ()) -> RunnerError:
    """Pulumi's failure text as one of the runner's errors, with the program's own words where it has them."""
    lower = text.lower()
    where = f"Pulumi project {session.project.name}, stack {session.name}"
    missing = _MISSING_CONFIG.search(text)
    if missing:
        return ConfigError(
            f"The program requires configuration {missing.group(1)!r}, which the inputs do not give.",
            where=where,
            fix=f"Add {missing.group(1).split(':', 1)[-1]!r} to the resource inputs (or as a secret input).",
        )
    if "incorrect passphrase" in lower or "passphrase must be set" in lower:
        return ConfigError(
            "The stack's secrets cannot be decrypted: PULUMI_CONFIG_PASSPHRASE is wrong or missing.",
            where=where,
            fix="Set PULUMI_CONFIG_PASSPHRASE to the passphrase the stack was created with.",
        )
    if "currently locked" in lower or "conflict: another update is currently in progress" in lower:
        lock = re.search(r"(\S+\.json): created by (.+)", text)
        return EngineError(
            "The stack is locked by another update.",
            where=f"{where}; lock {lock.group(1)} held by {lock.group(2)}" if lock else where,
            fix="Wait for that update to finish. If it died, run again with `iac-runner <verb> --cancel-lock` "
            "(pulumi cancel semantics); iac-runner never cancels by itself.",
        )
    if "no bucket" in lower or "nosuchbucket" in lower or "bucket does not exist" in lower:
        return ConfigError(
            "The state bucket does not exist.",
            where=f"IAC_RUNNER_STATE_URL={session.ctx.state_url}",
            fix="Create the bucket or point IAC_RUNNER_STATE_URL at an existing one.",
            details=_tail(text),
        )
    if "program failed with an unhandled exception" in lower or "traceback" in lower:
        return _program_error(text, where, session.ctx.folder)
    plugin = _MISSING_PLUGIN.search(text)
    if plugin:
        kind, name, version = plugin.groups()
        return ConfigError(
            f"A provider plugin the program needs is not available: pulumi-{kind}-{name} {version}.",
            where=f"{where}; PULUMI_HOME={session.env['PULUMI_HOME']}",
            fix=f"Install it where the engine looks (`pulumi plugin install {kind} {name} {version}` with the same "
            "PULUMI_HOME), or run where get.pulumi.com is reachable: pulumi downloads plugins on first use.",
        )
    killed = _KILLED.search(text)
    if killed:
        name = signal.Signals(int(killed.group(1))).name if int(killed.group(1)) in _SIGNALS else killed.group(1)
        return EngineError(
            f"pulumi was killed by signal {name} while {doing}.",
            where=where,
            fix="Run again: create converges. A killed pulumi leaves its lock on the stack; if the next run reports "
            "the stack locked and no other run is going on, run `iac-runner <verb> --cancel-lock` once.",
            details=_tail(text),
        )
    if resource_errors:
        # A provider's failure: its own message, without the gRPC wrapper and the CLI's progress around it.
        messages = [_GRPC_WRAPPER.sub("", message) for _, message in resource_errors]
        first = messages[0].splitlines()[0] if messages[0].strip() else "no message"
        return EngineError(
            f"Resource {resource_errors[0][0]} failed while {doing}: {first[:160]}",
            where=f"{where}; resource(s) {', '.join(dict.fromkeys(name for name, _ in resource_errors))}",
            fix="Fix the cause the provider reports, then run again: create converges from where it stopped.",
            details=_tail("\n".join(messages)),
        )
    return EngineError(
        f"pulumi failed while {doing}.", where=where, fix="See the engine's message below.", details=_tail(text)
    )


def _program_error(text: str, where: str, folder: Path) -> EngineError:
    """The program's own exception and the line that raised it, not the traceback and gRPC noise around it
    (the error file carries no Python traceback: the program's frames are named, innermost first)."""
    exception, frames = _last_exception(text)
    own = [(f, n) for f, n in frames if _inside(f, folder)]
    own = own or [(f, n) for f, n in frames if "/site-packages/" not in f and not f.startswith("<")] or frames
    location = f"{Path(own[-1][0]).name}:{own[-1][1]}" if own else where
    callers = [f"{Path(f).name}:{n}" for f, n in reversed(own[:-1])]
    return EngineError(
        f"The Pulumi program failed: {exception or 'an unhandled exception'}",
        where=location + (f", called from {', '.join(callers)}" if callers else "") + f" ({where})",
        fix="Fix the program (or the inputs it reads) and run again.",
    )


def _last_exception(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The exception line and frames of the first Python traceback in `text` (the engine repeats it); with
    chained exceptions, those of the last one in the chain."""
    lines = text.splitlines()
    exception, frames = "", list[tuple[str, str]]()
    start = next((i for i, line in enumerate(lines) if "Traceback (most recent call last):" in line), None)
    while start is not None:
        indent = len(lines[start]) - len(lines[start].lstrip())
        frames = []
        exception = ""
        index = start + 1
        for index in range(start + 1, len(lines)):
            line = lines[index]
            found = _TRACEBACK_FILE.search(line)
            if found:
                frames.append((found.group(1), found.group(2)))
            elif line.strip() and len(line) - len(line.lstrip()) <= indent:
                exception = line.strip()
                break
        following = " ".join(lines[index + 1 : index + 3])
        chained = "During handling of the above exception" in following or "direct cause of" in following
        start = next((i for i in range(index + 1, len(lines)) if "Traceback (most recent" in lines[i]), None)
        if not chained:
            break
    return exception, frames


def _inside(path: str, folder: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(path).resolve().is_relative_to(folder.resolve())
    return False


_FRAMING = re.compile(r"^\s*(code: -?\d+|stdout:|stderr:)\s*")


def _tail(text: str) -> str:
    """The engine's last lines, without the Automation API's `code:/stdout:/stderr:` framing and the CLI's
    progress dots."""
    lines = []
    for raw in text.splitlines():
        line = _FRAMING.sub("", raw)
        if line.strip() and not line.startswith("@ "):
            lines.append(line)
    return "\n".join(lines[-25:])


_CONFIG_READ = re.compile(r"^(get|require)(_secret)?(_int|_bool|_float|_object)?$")


def _declared_config(folder: Path) -> Declared:
    """Config the project declares in Pulumi.yaml, and the keys its Python program reads with pulumi.Config."""
    declared: dict[str, InputSpec] = {}
    project_name = ""
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        with contextlib.suppress(OSError, yaml.YAMLError):
            data = yaml.safe_load((folder / name).read_text())
            if isinstance(data, dict):
                project_name = str(data.get("name", ""))
                for key, given in (data.get("config") or {}).items():
                    spec = given if isinstance(given, dict) else {"default": given}
                    short = key.removeprefix(f"{project_name}:")
                    declared[short] = InputSpec("default" not in spec, bool(spec.get("secret")))
    complete = True
    found = False
    for path in _python_files(folder):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            complete = False
            continue
        reads, dynamic = _config_reads(tree, project_name)
        found = found or bool(reads)
        complete = complete and not dynamic
        for key, decl in reads.items():
            known = declared.get(key)
            declared[key] = InputSpec(decl.required or bool(known and known.required), decl.secret)
    return declared, complete and (found or bool(declared))


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        parts = set(path.relative_to(folder).parts)
        if not parts & {"venv", ".venv", "__pycache__", "node_modules"}:
            yield path


def _config_reads(tree: ast.AST, project: str) -> tuple[dict[str, InputSpec], bool]:
    """`config.require("x")` and friends, where `config = pulumi.Config(...)`; computed names make it dynamic."""
    namespaces: dict[str, str | None] = {}
    dynamic = False

    def namespace(call: ast.expr) -> tuple[bool, str | None]:
        if not isinstance(call, ast.Call):
            return False, None
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name != "Config":
            return False, None
        if not call.args:
            return True, None
        arg = call.args[0]
        return True, arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "?"

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            is_config, ns = namespace(node.value)
            if is_config:
                namespaces[node.targets[0].id] = ns
    reads: dict[str, InputSpec] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        match = _CONFIG_READ.match(node.func.attr)
        receiver = node.func.value
        if not match:
            continue
        if isinstance(receiver, ast.Name) and receiver.id in namespaces:
            ns = namespaces[receiver.id]
        else:
            is_config, ns = namespace(receiver)
            if not is_config:
                continue
        arg = node.args[0] if node.args else None
        if ns == "?" or not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            dynamic = True
            continue
        key = arg.value if ns in (None, project) else f"{ns}:{arg.value}"
        earlier = reads.get(key)
        required = match.group(1) == "require" or bool(earlier and earlier.required)
        reads[key] = InputSpec(required, bool(match.group(2)) or bool(earlier and earlier.secret))
    return reads, dynamic


BACKEND = PulumiBackend()
