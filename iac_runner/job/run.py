"""One run, start to end: settings -> source -> backend -> verb -> outputs. Data flows one way.

The engine never works in the user's folder: it gets a view of it in the run's private work dir (symlinks to the
stack's files, the driver's companion files beside them), so parallel runs of one folder cannot meet and a
read-only stack folder is fine. Each phase is recorded in the run report; the deadline is checked between them, so
no change starts after it passed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from iac_runner import backends
from iac_runner.backends.base import Backend, ChangeSummary, Drift, EngineOptions, Output, StackContext
from iac_runner.common import heap, paths
from iac_runner.common.errors import ConfigError, RunnerError
from iac_runner.common.files import check_writable_dir, mirror
from iac_runner.common.log import log
from iac_runner.common.process import Deadline, forward_signals
from iac_runner.common.secrets import MIN_LENGTH, REGISTRY
from iac_runner.job import outputs as outputs_mod
from iac_runner.job.companions import companions
from iac_runner.job.guard import Guard
from iac_runner.job.outputs import OutputFiles
from iac_runner.job.report import RunReport
from iac_runner.job.settings import Settings, load_stack_file
from iac_runner.job.source import Source, checkout

Action = Literal["apply", "destroy", "plan", "outputs", "validate", "drift"]
WRITES_OUTPUTS = ("apply", "destroy", "outputs")
_WORK_PREFIX = "iac-runner-work-"


@dataclass(frozen=True)
class RunRequest:
    action: Action
    settings: Settings
    base_dir: Path
    inputs: Mapping[str, Any] = field(default_factory=dict)
    secret_inputs: Mapping[str, Any] = field(default_factory=dict)
    output_files: OutputFiles | None = None
    #: Container mode: the stack needs an explicit identity and a home for its state outside the Job.
    container: bool = False
    cancel_lock: bool = False
    report: RunReport = field(default_factory=lambda: RunReport("run"))


@dataclass(frozen=True)
class RunResult:
    source: Source
    backend: str
    stack_name: str
    outputs: list[Output] = field(default_factory=list)
    plan: ChangeSummary | None = None
    drift: Drift | None = None


def execute(request: RunRequest) -> RunResult:
    settings, report = request.settings, request.report
    REGISTRY.add_all(request.secret_inputs.values())
    for name, value in request.secret_inputs.items():
        if isinstance(value, str) and 0 < len(value) < MIN_LENGTH:
            log.warning(
                f"secret input {name!r} is shorter than {MIN_LENGTH} characters: it stays out of files and process "
                "arguments, but an engine that prints it is not masked (so short a value would mask ordinary text)"
            )
    deadline = Deadline(settings.timeout)
    if request.output_files and request.action in WRITES_OUTPUTS:
        _check_output_files(request.output_files)
    with forward_signals(), contextlib.ExitStack() as stack:
        with report.phase("checkout"):
            checkout_deadline = deadline.phase(
                "checkout", settings.checkout_timeout, "IAC_RUNNER_CHECKOUT_TIMEOUT", "the git host"
            )
            source = stack.enter_context(
                checkout(
                    settings.git_source(), request.base_dir, settings.source_path, checkout_deadline, settings.retries
                )
            )
            stack_file = load_stack_file(source.folder)
            with heap.lasting():  # the backends' modules, imported to pick one, and the runner's own
                backend = _backend(settings.backend or stack_file.backend, source.folder)
            source.include(backend.local_dependencies(source.folder))
        report.backend = backend.name
        report.source = {k: v for k, v in _source_record(source, settings).items() if v}
        work = stack.enter_context(_work_dir())
        view = mirror(source.folder, _top(source), work / "stack", _companions(backend, request, source))
        stack_name = settings.stack_name or _default_stack_name(settings, request, backend.state_identity(view))
        report.stack = stack_name
        guard = Guard(settings.allowed_replacements() | set(stack_file.allow_replace), set(stack_file.protect))
        ctx = StackContext(
            folder=view,
            stack_name=stack_name,
            inputs=dict(request.inputs),
            secret_inputs=dict(request.secret_inputs),
            stack_file=stack_file,
            deadline=deadline,
            work_dir=paths.private_dir(work / "engine"),
            state_url=_state_url(settings, backend, view, request.container),
            env=_engine_env(work),
            lock_timeout=settings.lock_timeout,
            init_timeout=settings.init_timeout,
            retries=settings.retries,
            keep_dir=_keep_dir(request),
            options=EngineOptions(
                binary=settings.tofu_binary, cancel_lock=request.cancel_lock, refresh=settings.refresh
            ),
            events=report,
            approve=guard,
        )
        log.step(
            f"{request.action} stack {stack_name!r} with backend {backend.name}",
            backend=backend.name,
            stack=stack_name,
            commit=source.commit,
        )
        deadline.check(f"starting to {request.action}")
        try:
            result = _act(request.action, backend, ctx, guard)
        except RunnerError as error:
            raise _relocated(_sparse_hint(error, source), view, _shown(source)) from None
        finally:
            report.guard = guard.decision
        outs = outputs_mod.classify(result.outputs, request.secret_inputs)
        if request.action in WRITES_OUTPUTS:
            report.output_names(outs)
        if request.output_files and request.action in WRITES_OUTPUTS:
            with report.phase("write outputs"):
                outputs_mod.write(outs, request.output_files)
            log.info(f"wrote {len(outs)} output(s) to {request.output_files.values} and {request.output_files.secrets}")
    return RunResult(source, backend.name, stack_name, outs, result.plan, result.drift)


@dataclass(frozen=True)
class _Acted:
    outputs: list[Output] = field(default_factory=list)
    plan: ChangeSummary | None = None
    drift: Drift | None = None


def _act(action: Action, backend: Backend, ctx: StackContext, guard: Guard) -> _Acted:
    if action == "destroy":
        backend.destroy(ctx)
        return _Acted()
    if action == "outputs":
        return _Acted(outputs=backend.outputs(ctx))
    if action == "plan":
        plan = backend.plan(ctx)
        guard.preview(plan)
        return _Acted(plan=plan)
    if action == "drift":
        found = backend.drift(ctx)
        if isinstance(ctx.events, RunReport):
            ctx.events.drift(found)
        return _Acted(drift=found)
    if action == "apply":
        return _Acted(outputs=backend.apply(ctx))
    backend.validate(ctx)
    return _Acted()


def _backend(name: str | None, folder: Path) -> Backend:
    backend = backends.get(name) if name else backends.detect(folder)
    if not name:
        log.info(f"detected backend {backend.name} ({backend.detect(folder)})")
    return backend


def _companions(backend: Backend, request: RunRequest, source: Source) -> dict[str, Path]:
    """The driver's `files` at SCRIPTS_DIRECTORY's root that belong beside the stack (its tfvars, its backend, its
    stack config), in every layout: the runner's checkout, the driver's with or without a subpath."""
    scripts = request.base_dir.resolve()
    if not request.container or source.folder == scripts:
        return {}
    found = companions(backend, scripts)
    for name in found:
        replaces = " (it replaces the stack's own)" if (source.folder / name).exists() else ""
        log.info(f"using {name} from SCRIPTS_DIRECTORY beside the stack{replaces}")
    return found


def _top(source: Source) -> Path:
    """How far up the engine's view of the stack reaches: the repository the stack is in, else the base folder."""
    for folder in (source.root, *source.root.parents):
        if (folder / ".git").exists():
            return folder
    return source.root


def _shown(source: Source) -> str:
    """How to name the stack's folder to a person: its path in the repository, or on this machine."""
    if source.commit is not None:
        return str(source.folder.relative_to(source.root))
    return str(source.folder)


def _relocated(error: RunnerError, view: Path, shown: str) -> RunnerError:
    """The error as the user reads it (its diagnostics in the run report too): files named in the stack's own
    folder, not in the run's private view."""

    def moved(text: str) -> str:
        return text.replace(f"{view}/", f"{shown}/").replace(str(view), shown)

    for name in ("summary", "where", "fix", "details"):
        setattr(error, name, moved(getattr(error, name)))
    error.diagnostics = tuple(replace(d, detail=moved(d.detail), file=moved(d.file)) for d in error.diagnostics)
    return error


#: What engines say when code the stack uses is not there (a module folder, a Python module, a file).
_MISSING_CODE = ("no module named", "unreadable module directory", "module not found", "no such file or directory",
                 "failed to read module directory", "cannot find module")  # fmt: skip


def _sparse_hint(error: RunnerError, source: Source) -> RunnerError:
    """A stack that fails for want of code in a sparse checkout: say what was checked out and how to add more."""
    text = f"{error.summary} {error.details}".lower()
    if source.sparse and any(marker in text for marker in _MISSING_CODE):
        error.fix = (
            f"{error.fix} The checkout holds only {', '.join(source.sparse)} of the repository: if the stack uses "
            "code elsewhere in it that the runner could not see, name those folders in IAC_RUNNER_SOURCE_INCLUDE "
            "(comma-separated)."
        ).strip()
    return error


def _source_record(source: Source, settings: Settings) -> dict[str, str | None]:
    return {"url": source.url, "ref": source.ref, "commit": source.commit, "path": settings.source_path}


def _default_stack_name(settings: Settings, request: RunRequest, identity: str | None) -> str:
    """Local runs: the stack path's folders joined ('stacks/s3/cloudformation' -> 'stacks-s3-cloudformation').
    A job must say which resource it is (a folder name is the same for every resource of a definition), unless
    the stack fixes its state's identity itself: then the name only labels the run."""
    if request.container and identity is None:
        raise ConfigError(
            "IAC_RUNNER_STACK_NAME is not set: in container mode the stack's identity must come from the resource.",
            where="job.variables of the resource definition",
            fix="Set IAC_RUNNER_STACK_NAME to the resource's unique id, `${context.res.guresid}` in a Humanitec "
            "definition: derived from a folder, two resources would share (and destroy) one stack.",
        )
    if settings.source_path:
        name = "-".join(part for part in Path(settings.source_path).parts if part not in ("/", "."))
    else:
        name = request.base_dir.resolve().name
    if request.container:
        log.info(f"the stack's state is identified by {identity}; {name!r} only names this run")
    return name


def _state_url(settings: Settings, backend: Backend, folder: Path, container: bool) -> str | None:
    if settings.state_url or not backend.needs_state(folder):
        return settings.state_url
    if container:
        raise ConfigError(
            f"IAC_RUNNER_STATE_URL is required for the {backend.name} backend in container mode.",
            where="job.variables of the resource definition",
            fix="Set IAC_RUNNER_STATE_URL to s3://bucket/prefix (or file:///dir on a persistent volume): "
            "state kept inside the Job's container dies with it.",
        )
    return (paths.state_home() / "state").as_uri()


def _engine_env(work: Path) -> dict[str, str]:
    """The engines' environment: the job's, with a temp dir they can write (tofu's provider sockets live there;
    a read-only /tmp would otherwise surface as "failed to instantiate provider")."""
    env = dict(os.environ)
    temp = env.get("TMPDIR") or "/tmp"  # noqa: S108 - the system's temp dir, only tested
    if not os.access(temp, os.W_OK | os.X_OK):
        env["TMPDIR"] = str(paths.private_dir(work / "tmp"))
        log.warning(f"{temp} is not writable: the engines' temp files go to {env['TMPDIR']}")
    return env


def _keep_dir(request: RunRequest) -> Path:
    if request.output_files is not None:
        return request.output_files.values.parent
    return paths.state_home() / "recovered"


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    """The run's private work dir (0700), removed at the end; one that a killed run left behind (its saved plan may
    hold secret values) is removed by the next run."""
    _remove_stale()
    try:
        work = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=paths.temp_dir()))
    except OSError as exc:
        raise ConfigError(
            f"No writable temp folder for the run's work dir ({paths.temp_dir()}: {exc.strerror}).",
            where="TMPDIR",
            fix="Give the job a writable /tmp (an emptyDir under a read-only root filesystem) or set TMPDIR.",
        ) from None
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_stale() -> None:
    for folder in paths.temp_dir().glob(f"{_WORK_PREFIX}*-*"):
        pid = folder.name.removeprefix(_WORK_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.stat().st_uid == os.getuid():
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_output_files(files: OutputFiles) -> None:
    named = {"OUTPUTS_FILE": files.values, "SECRET_OUTPUTS_FILE": files.secrets}
    for label, path in named.items():
        problem = check_writable_dir(path)
        if problem:
            raise ConfigError(
                f"The output file {path} cannot be written: {problem}.",
                where=label,
                fix="Point it at a writable location (the driver's shared directory) before anything is changed.",
            )
