"""Pulumi through its Automation API: a LocalWorkspace on the checked-out project folder, the real CLI and
Python language host.

Inputs become stack config in `Pulumi.<stack>.yaml` (plain values written with their types, secret values
encrypted by `pulumi config set --secret`, which reads them from stdin, never from an argument). Engine
processes the Automation API starts are tracked (`process.TrackedPopen`) so that the run's deadline and
signals reach them; progress comes from the engine's events.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import yaml

from backends.base import ChangeSummary, EngineUnavailable, ResourceChange, StackContext
from runner import process
from runner.errors import ConfigError, EngineError, RunnerError
from runner.files import write_atomic
from runner.log import log
from runner.naming import sanitize
from runner.outputs import Output
from runner.secrets import REGISTRY

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.yml")
TOOLS = Path(__file__).resolve().parent.parent / ".tools"
SECRET_MASK = "[secret]"  # noqa: S105 - what `pulumi stack output` prints for a secret
# Engine operations as plan actions; a replacement's own create/delete steps are part of its "replace".
_OPS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
_MISSING_CONFIG = re.compile(r"Missing required configuration variable '([^']+)'")
_TRACEBACK_FILE = re.compile(r'File "([^"]+)", line (\d+)')


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
        return cls(path, data["name"], name, options or {}, backend.get("url") if isinstance(backend, dict) else None)


class PulumiBackend:
    name = "pulumi"
    companions = ("Pulumi.*.yaml", "Pulumi.*.yml")

    def detect(self, folder: Path) -> str | None:
        return next((n for n in PROJECT_FILES if (folder / n).is_file()), None)

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
        main = ctx.folder / project.options.get("main", "__main__.py")
        if not main.is_file():
            raise ConfigError(
                "The Pulumi project has no __main__.py.", where=str(ctx.folder), fix="Add the program's __main__.py."
            )
        try:
            compile(main.read_text(), str(main), "exec")
        except SyntaxError as exc:
            raise ConfigError(
                f"The Pulumi program has a syntax error: {exc.msg}.",
                where=f"{main.name}:{exc.lineno}",
                fix="Fix the Python syntax at that line.",
            ) from None
        log.info(f"Pulumi project {project.name!r} is valid (runtime python)")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        with _Session(ctx) as session:
            return session.preview()

    def apply(self, ctx: StackContext) -> list[Output]:
        with _Session(ctx) as session:
            session.up()
            return session.outputs()

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
    changes: list[ResourceChange] = field(default_factory=list)
    preview: bool = False

    def __call__(self, event: EngineEvent) -> None:
        if event.diagnostic_event:
            diagnostic = event.diagnostic_event
            message = diagnostic.message.rstrip()
            if diagnostic.severity == "error":
                self.errors.append(message)
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
            self._run([sys.executable, "-m", "venv", str(cached)], "creating the virtualenv")
            if requirements.is_file():
                pip = [str(cached / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
                self._run([*pip, "-r", str(requirements)], "installing the project's requirements")
            (cached / ".complete").touch()
        else:
            log.info(f"reusing the cached virtualenv for {requirements.name} ({digest})")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else shutil.rmtree(target)
        target.symlink_to(cached, target_is_directory=True)

    def _run(self, argv: list[str], doing: str, stdin: str | None = None) -> process.Completed:
        done = process.run(
            argv,
            engine="pulumi",
            deadline=self.ctx.deadline,
            cwd=self.ctx.folder,
            env=self.env,
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
        with self._translated("cancelling the stack's lock"), contextlib.suppress(Exception):
            stack.cancel()

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

    def up(self) -> None:
        assert self.stack is not None
        self.configure()
        log.step("pulumi up")
        progress = _Progress()
        with self._translated("updating the stack", progress):
            result = self.stack.up(on_event=progress, on_output=log.debug)
        changes = {k: v for k, v in _counts(result.summary.resource_changes).items() if k != "same"}
        log.info("no changes: the infrastructure matches the program" if not changes else f"changes: {changes}")

    def destroy(self) -> None:
        assert self.stack is not None
        log.step("pulumi destroy")
        progress = _Progress()
        with self._translated("destroying the stack", progress):
            result = self.stack.destroy(on_event=progress, on_output=log.debug)
        deleted = _counts(result.summary.resource_changes).get("delete", 0)
        log.info(f"destroyed {deleted} resource(s)" if deleted else "the stack holds no resources: nothing to destroy")

    def outputs(self) -> list[Output]:
        """Outputs with the engine's secret flag; a value holding a secret anywhere is secret whole."""
        base = [self.cli, "stack", "output", "--json", "--stack", self.name, "--non-interactive"]
        masked = json.loads(self._run(base, "reading outputs").stdout or "{}")
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
            raise _classify(text, self, doing) from None


class _Gone(Exception):
    """The stack does not exist (destroy and outputs treat it as empty)."""


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


def _state_note(env: Mapping[str, str]) -> str:
    url = env.get("PULUMI_BACKEND_URL")
    return f", state at {url.split('?')[0]}" if url else ""


def _find_cli_or_fail() -> str:
    try:
        return _find_cli()
    except EngineUnavailable as exc:
        raise ConfigError(f"The Pulumi engine is not available: {exc}.", fix="See `iac-runner backends`.") from None


def _classify(text: str, session: _Session, doing: str) -> RunnerError:
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
        return _program_error(text, where)
    return EngineError(
        f"pulumi failed while {doing}.", where=where, fix="See the engine's message below.", details=_tail(text)
    )


def _program_error(text: str, where: str) -> EngineError:
    """The program's own exception and the line that raised it, not the gRPC noise around it."""
    frames = _TRACEBACK_FILE.findall(text)
    program_frames = [(f, n) for f, n in frames if "/site-packages/" not in f] or frames
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    exception = next((line for line in reversed(lines) if re.match(r"^[\w.]+(Error|Exception)\b", line)), lines[-1])
    location = f"{Path(program_frames[-1][0]).name}:{program_frames[-1][1]}" if program_frames else where
    return EngineError(
        f"The Pulumi program failed: {exception}",
        where=f"{location} ({where})",
        fix="Fix the program (or the inputs it reads) and run again.",
        details=_tail(text),
    )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-25:])


BACKEND = PulumiBackend()
