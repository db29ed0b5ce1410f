"""One run, start to end: settings -> source -> backend -> verb -> outputs. Data flows one way."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from iac_runner import backends
from iac_runner.backends.base import Backend, ChangeSummary, EngineOptions, Output, StackContext
from iac_runner.common import paths
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import check_writable_dir
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize
from iac_runner.common.process import Deadline, forward_signals
from iac_runner.common.secrets import REGISTRY
from iac_runner.job import outputs as outputs_mod
from iac_runner.job.outputs import OutputFiles
from iac_runner.job.settings import Settings, load_stack_file
from iac_runner.job.source import Source, checkout

Action = Literal["apply", "destroy", "plan", "outputs", "validate"]
WRITES_OUTPUTS = ("apply", "destroy", "outputs")


@dataclass(frozen=True)
class RunRequest:
    action: Action
    settings: Settings
    base_dir: Path
    inputs: Mapping[str, Any] = field(default_factory=dict)
    secret_inputs: Mapping[str, Any] = field(default_factory=dict)
    output_files: OutputFiles | None = None
    #: Container mode: a stack's state must be given a home outside the Job (it would die with it).
    container: bool = False
    cancel_lock: bool = False


@dataclass(frozen=True)
class RunResult:
    source: Source
    backend: str
    stack_name: str
    outputs: list[Output] = field(default_factory=list)
    plan: ChangeSummary | None = None


def execute(request: RunRequest) -> RunResult:
    settings = request.settings
    REGISTRY.add_all(request.secret_inputs.values())
    deadline = Deadline(settings.timeout)
    if request.output_files and request.action in WRITES_OUTPUTS:
        _check_output_files(request.output_files)
    git = settings.git_source()
    with (
        forward_signals(),
        checkout(git, request.base_dir, settings.source_path, deadline) as source,
        _work_root(request) as work_root,
    ):
        stack_file = load_stack_file(source.folder)
        backend = _backend(settings.backend or stack_file.backend, source.folder)
        if request.container and source.commit:
            _bring_companions(backend, request.base_dir, source.folder)
        stack_name = settings.stack_name or _default_stack_name(settings, source)
        ctx = StackContext(
            folder=source.folder,
            stack_name=stack_name,
            inputs=dict(request.inputs),
            secret_inputs=dict(request.secret_inputs),
            stack_file=stack_file,
            deadline=deadline,
            work_dir=work_root / sanitize(stack_name, allowed="a-zA-Z0-9_.-", max_length=100),
            state_url=_state_url(settings, backend, source.folder, request.container),
            lock_timeout=settings.lock_timeout,
            options=EngineOptions(binary=settings.tofu_binary, cancel_lock=request.cancel_lock),
            env=dict(os.environ),
        )
        log.step(
            f"{request.action} stack {stack_name!r} with backend {backend.name}",
            backend=backend.name,
            stack=stack_name,
            commit=source.commit,
        )
        result = _act(request.action, backend, ctx)
    outs = outputs_mod.classify(result.outputs, request.secret_inputs)
    if request.output_files and request.action in WRITES_OUTPUTS:
        outputs_mod.write(outs, request.output_files)
        log.info(f"wrote {len(outs)} output(s) to {request.output_files.values} and {request.output_files.secrets}")
    return RunResult(source, backend.name, stack_name, outs, result.plan)


@dataclass(frozen=True)
class _Acted:
    outputs: list[Output] = field(default_factory=list)
    plan: ChangeSummary | None = None


def _act(action: Action, backend: Backend, ctx: StackContext) -> _Acted:
    if action == "destroy":
        backend.destroy(ctx)
        return _Acted()
    if action == "outputs":
        return _Acted(outputs=backend.outputs(ctx))
    if action == "plan":
        return _Acted(plan=backend.plan(ctx))
    if action == "apply":
        return _Acted(outputs=backend.apply(ctx))
    backend.validate(ctx)
    return _Acted()


def _backend(name: str | None, folder: Path) -> Backend:
    backend = backends.get(name) if name else backends.detect(folder)
    if not name:
        log.info(f"detected backend {backend.name} ({backend.detect(folder)})")
    return backend


def _bring_companions(backend: Backend, scripts: Path, folder: Path) -> None:
    """The driver's `files` land in SCRIPTS_DIRECTORY, the stack in a git checkout: they belong together."""
    for pattern in backend.companions:
        for path in sorted(scripts.glob(pattern)):
            if path.is_file():
                if (folder / path.name).exists():
                    log.warning(f"{path.name} from SCRIPTS_DIRECTORY replaces the one in the repository")
                shutil.copyfile(path, folder / path.name)
                log.info(f"using {path.name} from SCRIPTS_DIRECTORY beside the stack")


def _default_stack_name(settings: Settings, source: Source) -> str:
    """The stack path's folders joined ('stacks/s3/cloudformation' -> 'stacks-s3-cloudformation')."""
    if settings.source_path:
        return "-".join(part for part in Path(settings.source_path).parts if part not in ("/", "."))
    return source.folder.name


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


@contextlib.contextmanager
def _work_root(request: RunRequest) -> Iterator[Path]:
    """Where engines keep their working files: private to the run in a container (the Job is thrown away
    anyway), a per-user cache locally so that providers and plugins are not fetched again."""
    if request.container:
        with tempfile.TemporaryDirectory(prefix="iac-runner-work-") as tmp:
            yield Path(tmp)
        return
    yield paths.cache_home() / "work"


def _check_output_files(files: OutputFiles) -> None:
    for label, path in (("OUTPUTS_FILE", files.values), ("SECRET_OUTPUTS_FILE", files.secrets)):
        problem = check_writable_dir(path)
        if problem:
            raise ConfigError(
                f"The output file {path} cannot be written: {problem}.",
                where=label,
                fix="Point it at a writable location (the driver's shared directory) before anything is changed.",
            )
