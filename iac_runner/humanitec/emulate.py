"""`iac-runner driver emulate DEFINITION.yaml`: run a resource definition here as the Container Driver would run
it in the cluster, before it is pushed.

What the driver does, in order: a fresh shared directory (SCRIPTS_DIRECTORY), the definition's `source` checked
out into it and its `files` written there (layout.py), `job.variables` and the resolved secret variables
set, the cloud credentials mapped in, the contract's own variables set (ACTION, SCRIPTS_DIRECTORY, OUTPUTS_FILE,
SECRET_OUTPUTS_FILE, ERROR_FILE), then the job's command run. Here that command runs as a local process through the
process seam (the runner of this checkout when the command is `iac-runner`), or in the image with `--docker`.

Placeholders the orchestrator would resolve are resolved from a demo context (`--placeholder` sets any of them);
references to other resources (`${resources['config.runner'].outputs.job}`) from the `humanitec/echo` definitions
beside the definition, or in `--config` files, chosen by their criteria as the orchestrator does (references.py).
Secrets come from `--secret` or the environment; a missing one stops the run before anything happens. The cloud
is the embedded moto by default (when no AWS credentials are set), a running emulator's URL, or real AWS.
The contract's file variables are absolute paths in the shared directory, as the driver's are: a job that changes
directory still writes where the driver reads, and one that exits 0 without both output files fails, as it would
under the driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from iac_runner import backends
from iac_runner.backends.base import Backend
from iac_runner.common import paths, process
from iac_runner.common.errors import ConfigError, EngineError, ExitCode
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.process import Deadline, forward_signals
from iac_runner.common.secrets import MASK, REGISTRY
from iac_runner.humanitec import layout, references
from iac_runner.humanitec.document import Document, Loc, load_file, model_problems, shown_path
from iac_runner.humanitec.model import (
    ContainerInputs,
    Definition,
    Job,
    context_values,
    placeholders,
    resolve,
)
from iac_runner.humanitec.validate import SECRET_VARIABLES, SECRETS, VALUES, check_static
from iac_runner.job import contract
from iac_runner.job.settings import SECRET_PREFIX, load_inputs_file
from iac_runner.job.source import SourceError, stack_folder

DriverAction = Literal["create", "destroy"]
INPUTS_FILE = "resource-inputs.json"
CONTRACT_FILES = contract.FILES
# What a local process needs of this machine to run at all (with each engine's own: Backend.host_variables);
# everything else the job gets from the definition.
HOST_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "NO_COLOR", "TZ", "TMPDIR",
    "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip
# Any of these set means AWS credentials are at hand: the default endpoint is then AWS, not moto.
AWS_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class EmulateRequest:
    definition: Path
    action: DriverAction
    inputs: Path | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: "moto", "aws", an emulator's http(s) URL, or None: moto unless AWS credentials are set.
    endpoint: str | None = None
    docker: bool = False
    placeholders: Mapping[str, str] = field(default_factory=dict)
    url_map: Mapping[str, str] = field(default_factory=dict)
    state_url: str | None = None
    out_dir: Path | None = None
    keep: bool = False
    timeout: float | None = None
    #: Files of definitions that references (`${resources['config.x'].outputs.y}`) read; default: the YAML files
    #: beside the definition.
    configs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class EmulateResult:
    exit_code: int
    outputs: dict[str, Any]
    secret_outputs: dict[str, Any]
    error: str | None

    def summary(self) -> str:
        shown = {
            "exit_code": self.exit_code,
            "outputs": self.outputs,
            "secret_outputs": dict.fromkeys(self.secret_outputs, MASK),
            "error": self.error,
        }
        return json.dumps(shown, indent=2, sort_keys=True)


def emulate(request: EmulateRequest) -> EmulateResult:
    doc, definition, inputs = load_definition(request.definition)
    log.step(
        f"emulating the Container Driver: {definition.metadata.id} ({definition.entity.type}), ACTION={request.action}"
    )
    context = context_values(definition, request.placeholders)
    resolver = _resolver(request, context)
    job, origin = _job(doc, inputs, resolver)
    inputs = inputs.model_copy(update={"values": inputs.values.model_copy(update={"job": job})})
    # What the job gets (the cluster is for reaching a cluster: not needed here).
    used = [inputs.values.model_dump(exclude={"job", "cluster"}), inputs.secret_refs.model_dump(exclude={"cluster"})]
    known, unresolved = resolver.strings([*used, job.model_dump()])
    values = _Values({**known, **context}, unresolved)
    variables = _variables(origin, job, values)
    secrets = _Secrets.resolve(doc, inputs, request.secrets, os.environ, values)
    endpoint = _endpoint(request.endpoint)
    if request.docker:
        _check_docker()
    with contextlib.ExitStack() as stack:
        scripts = _scripts_directory(stack, request.keep)
        stack.enter_context(forward_signals())
        deadline = Deadline(request.timeout or _timeout(variables))
        _lay_out(
            doc=doc,
            inputs=inputs,
            scripts=scripts,
            request=request,
            secrets=secrets,
            values=values,
            variables=variables,
            deadline=deadline,
        )
        cloud = stack.enter_context(_cloud(endpoint, inputs))
        state_dir = _state(job, variables, request.state_url, endpoint, scripts)
        shared = job.shared_directory.rstrip("/") if request.docker else str(scripts)
        # Absolute, as the driver's are: a job that changes directory still writes where the driver reads.
        files = {name: f"{shared}/{file}" for name, file in CONTRACT_FILES.items()}
        contract = {"ACTION": request.action, "SCRIPTS_DIRECTORY": shared, **files}
        job_env = {**cloud, **variables, **secrets.variables, **contract, "PYTHONUNBUFFERED": "1"}
        code = _run(job, origin, scripts, job_env, docker=request.docker, state_dir=state_dir, deadline=deadline)
        result = _collect(scripts, code, files, "{}:{}".format(*origin.line("command")))
        if request.out_dir is not None:
            _copy_out(scripts, request.out_dir)
    return result


# -- the definition --------------------------------------------------------------------------------------


def load_definition(path: Path) -> tuple[Document, Definition, ContainerInputs]:
    """The one Container Driver definition of the file, statically checked (problems stop the run: exit 2)."""
    if not path.is_file():
        raise ConfigError(f"The definition file {path} does not exist.", where="driver emulate DEFINITION")
    documents, problems = load_file(path)
    checked = [check_static(doc) for doc in documents]
    problems += [p for c in checked for p in c.problems]
    if problems:
        raise ConfigError(
            f"The definition has {len(problems)} problem(s); the driver would not run it as it is.",
            where=f"{problems[0].render().split(': ', 1)[0]}",
            fix="Correct them; `iac-runner definition validate` shows each with its line.",
            details="\n".join(p.render() for p in problems[:10]),
        )
    runnable = [c for c in checked if c.inputs is not None and c.definition is not None]
    if len(runnable) != 1:
        raise ConfigError(
            f"The file holds {len(runnable)} Container Driver definitions; emulate runs exactly one.",
            where=str(path),
            fix="Put the definition to run in a file of its own (driver_type: humanitec/container).",
        )
    one = runnable[0]
    assert one.definition is not None and one.inputs is not None
    return one.doc, one.definition, one.inputs


@dataclass(frozen=True)
class _Values:
    """What the placeholders resolve to here, and why those references that do not, do not."""

    known: dict[str, str]
    unresolved: dict[str, references.Unresolvable]


@dataclass(frozen=True)
class _Origin:
    """Where the job is written: in the definition, or in the definition a reference read it from."""

    doc: Document
    loc: Loc

    def at(self, *parts: str) -> tuple[Document, Loc]:
        return self.doc, (*self.loc, *parts)

    def line(self, *parts: str) -> tuple[Path, int]:
        return self.doc.file, self.doc.line((*self.loc, *parts))


def _resolver(request: EmulateRequest, context: Mapping[str, str]) -> references.Resolver:
    if request.configs:
        found = references.candidates(request.configs, strict=True)
        searched = f"in --config {', '.join(shown_path(p) for p in request.configs)}"
    else:
        found = references.candidates(references.folder_files(request.definition), strict=False)
        searched = f"in {shown_path(request.definition.parent) or '.'}"
    return references.Resolver(found, context, searched)


def _job(doc: Document, inputs: ContainerInputs, resolver: references.Resolver) -> tuple[Job, _Origin]:
    """The job: written out in the definition, or read from the definition its placeholder references (the
    orchestrator's `config` pattern: `job: ${resources['config.runner'].outputs.job}`)."""
    loc: Loc = (*VALUES, "job")
    if inputs.job is not None:
        return inputs.job, _Origin(doc, loc)
    assert isinstance(inputs.values.job, str)
    expression = placeholders(inputs.values.job)[0]
    try:
        found = resolver.output(expression)
    except references.Unresolvable as exc:
        raise ConfigError(
            f"The job is ${{{expression}}}, which cannot be resolved here: {exc.reason}.",
            where=f"{doc.file}:{doc.line(loc)}",
            fix=exc.fix,
        ) from None
    try:
        job = Job.model_validate(found.value)
    except ValidationError as exc:
        problems = model_problems(found.doc, exc, Job, found.loc)
        raise ConfigError(
            f"The job that ${{{expression}}} gives is not one the driver can run.",
            where=problems[0].render().split(": ", 1)[0],
            fix="Correct the job in that definition (image, command, shared_directory, variables).",
            details="\n".join(p.render() for p in problems[:10]),
        ) from None
    log.info(f"job: {found.doc.file}:{found.doc.line(found.loc)} (${{{expression}}})")
    return job, _Origin(found.doc, found.loc)


def _variables(origin: _Origin, job: Job, values: _Values) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, value in job.variables.items():
        text, missing = resolve(value, values.known)
        if missing and name == "IAC_RUNNER_STATE_URL":
            log.info(f"IAC_RUNNER_STATE_URL is a placeholder here (${{{missing[0]}}})")
            continue
        if missing:
            raise _unresolved(*origin.at("variables", name), f"job variable {name}", missing[0], values)
        resolved[name] = text
    return resolved


def _unresolved(doc: Document, loc: Loc, what: str, expression: str, values: _Values) -> ConfigError:
    why = values.unresolved.get(expression)
    return ConfigError(
        f"The placeholder ${{{expression}}} of {what} cannot be resolved here" + (f": {why.reason}." if why else "."),
        where=f"{doc.file}:{doc.line(loc)}",
        fix=(f"{why.fix} Or give" if why else "Give")
        + f' its value: --placeholder "{expression}=VALUE" (the orchestrator resolves it in a deployment).',
    )


@dataclass
class _Secrets:
    variables: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    ssh_key: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        doc: Document,
        inputs: ContainerInputs,
        given: Mapping[str, str],
        environ: Mapping[str, str],
        values: _Values,
    ) -> _Secrets:
        """Every secret reference's value: `--secret NAME=VALUE`, a literal `value:`, or the environment."""
        refs = inputs.secret_refs
        used: set[str] = set()
        missing: list[tuple[tuple[str, ...], str]] = []

        def lookup(
            loc: tuple[str, ...], value: str | None, names: list[str], env_names: list[str], required: bool = True
        ) -> str | None:
            for name in names:
                if name in given:
                    used.add(name)
                    return given[name]
            if value is not None:
                text, unresolved = resolve(value, values.known)
                if not unresolved:
                    return text
            for name in env_names:
                if name in environ:
                    return environ[name]
            if required:
                missing.append((loc, names[0]))
            else:
                log.info(
                    f"{names[0]} has no value here ({' / '.join(env_names)}): the source is checked out without it"
                )
            return None

        found = cls()
        for name, ref in refs.job.variables.items():
            short = [name.removeprefix(SECRET_PREFIX)] if name.startswith(SECRET_PREFIX) else []
            value = lookup((*SECRET_VARIABLES, name), ref.value, [name, *short], [name])
            if value is not None:
                found.variables[name] = value
        if refs.source and refs.source.password:
            loc = (*SECRETS, "source", "password")
            env_names = ["IAC_RUNNER_SOURCE_TOKEN"]
            found.token = lookup(loc, refs.source.password.value, ["source.password"], env_names, required=False)
        if refs.source and refs.source.ssh_key:
            loc = (*SECRETS, "source", "ssh_key")
            env_names = ["IAC_RUNNER_SOURCE_SSH_KEY"]
            found.ssh_key = lookup(loc, refs.source.ssh_key.value, ["source.ssh_key"], env_names, required=False)
        for name, ref in refs.files.items():
            value = lookup((*SECRETS, "files", name), ref.value, [f"files.{name}"], [])
            if value is not None:
                found.files[name] = value
        if refs.cluster:
            log.info(f"secret_refs.cluster ({', '.join(refs.cluster)}) is for reaching the cluster: not needed here")
        REGISTRY.add_all([*found.variables.values(), *found.files.values(), found.token, found.ssh_key])
        if missing:
            names = ", ".join(name for _, name in missing)
            raise ConfigError(
                f"{len(missing)} secret(s) of the definition have no value here: {names}.",
                where=f"{doc.file}:{doc.line(missing[0][0])}",
                fix="Give each as --secret NAME=VALUE (IAC_RUNNER_SECRET_x also as x), or set the environment variable "
                "of the same name (source.password: IAC_RUNNER_SOURCE_TOKEN, source.ssh_key: "
                "IAC_RUNNER_SOURCE_SSH_KEY).",
            )
        unused = sorted(set(given) - used)
        if unused:
            accepted = [*refs.job.variables, *(["source.password"] if refs.source and refs.source.password else [])]
            raise ConfigError(
                f"--secret {unused[0]} matches no secret reference of the definition.",
                where=str(doc.file),
                fix=f"The definition's secrets: {', '.join(accepted) or 'none'}.",
            )
        return found


def _timeout(variables: Mapping[str, str]) -> float:
    """The job's own limit (IAC_RUNNER_TIMEOUT) plus the time the driver's checkout and a slow start take."""
    try:
        return float(variables.get("IAC_RUNNER_TIMEOUT", 3600)) + 300
    except ValueError:
        return 3900


# -- the shared directory ----------------------------------------------------------------------------------


def _scripts_directory(stack: contextlib.ExitStack, keep: bool) -> Path:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="iac-runner-emulate-", dir=paths.temp_dir()))
        log.info(f"--keep: the shared directory stays at {path}")
    else:
        path = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="iac-runner-emulate-", dir=paths.temp_dir()))
        )
    scripts = path / "workspace"
    scripts.mkdir()
    return scripts


def _lay_out(
    *,
    doc: Document,
    inputs: ContainerInputs,
    scripts: Path,
    request: EmulateRequest,
    secrets: _Secrets,
    values: _Values,
    variables: dict[str, str],
    deadline: Deadline,
) -> None:
    source = inputs.values.source
    if source is not None:
        log.step(
            f"driver: checking out {source.url} @ {source.ref or 'HEAD'}"
            + (f" path {source.path}" if source.path else "")
        )
        try:
            commit = layout.fetch_source(
                source,
                scripts,
                url_map=request.url_map,
                token=secrets.token,
                ssh_key=secrets.ssh_key,
                deadline=deadline,
            )
        except SourceError as exc:
            loc = (*VALUES, "source", exc.part)
            raise ConfigError(
                exc.summary,
                where=f"{doc.file}:{doc.line(loc)} (source.{exc.part})",
                fix=exc.fix,
                details=exc.details,
            ) from None
        log.info(f"driver: source at commit {commit} is in the shared directory")
    inputs_name = variables.get("RESOURCE_INPUTS_FILE")
    replaced = {inputs_name} if request.inputs and inputs_name else set()
    files = {}
    for name, text in inputs.values.files.items():
        content, missing = resolve(text, values.known)
        if missing and name not in replaced:
            raise _unresolved(doc, (*VALUES, "files", name), f"files entry {name}", missing[0], values)
        files[name] = content
    layout.write_files(scripts, files)
    layout.write_files(scripts, secrets.files, mode=0o600)
    if files or secrets.files:
        log.info(f"driver: wrote files {', '.join(sorted([*files, *secrets.files]))}")
    if request.inputs is not None:
        data = load_inputs_file(request.inputs, "--inputs")
        name = inputs_name or INPUTS_FILE
        layout.write_files(scripts, {name: json.dumps(data, indent=2) + "\n"})
        variables["RESOURCE_INPUTS_FILE"] = name
        log.info(f"driver: the resource inputs from {request.inputs} are {name} (RESOURCE_INPUTS_FILE)")
    if request.docker:
        # The image's user (uid 1000) writes the outputs there and reads what the driver put there, as it does in
        # the driver's pod (the checkout here ran with the runner's private umask).
        for path in (scripts, *scripts.rglob("*")):
            if path.is_dir():
                path.chmod(0o777)
            elif path.is_file() and not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444)


# -- the cloud and the state --------------------------------------------------------------------------------


def _endpoint(value: str | None) -> str:
    if value is None:
        credentials = any(os.environ.get(name) for name in AWS_CREDENTIALS)
        return "aws" if credentials else "moto"
    if value in ("moto", "aws") or value.startswith(("http://", "https://")):
        return value
    raise ConfigError(
        f"--endpoint must be moto, aws or an emulator's http(s):// URL, not {value!r}.",
        where="--endpoint",
        fix="moto starts the embedded emulator for this run; a URL points at one already running "
        "(python -m iac_runner.local.cloud PORT); aws uses your AWS credentials.",
    )


@contextlib.contextmanager
def _cloud(endpoint: str, inputs: ContainerInputs) -> Iterator[dict[str, str]]:
    """The cloud environment the job gets: the emulator's, or what credentials_config maps in from AWS."""
    from iac_runner.local.cloud import Emulator, running

    if endpoint == "moto":
        with running() as emulator:
            log.step(f"cloud: moto on {emulator.endpoint} (starts empty on every run)")
            yield emulator.env()
        return
    if endpoint != "aws":
        log.step(f"cloud: the emulator at {endpoint}")
        yield Emulator(endpoint).env()
        return
    mapped = inputs.values.credentials_config.environment if inputs.values.credentials_config else {}
    absent = [name for name in mapped if name not in os.environ]
    if absent and "AWS_PROFILE" not in os.environ:
        log.warning(f"credentials_config maps {', '.join(absent)}, which this environment does not set")
    log.step("cloud: AWS, with the credentials of this environment")
    yield {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def _state(job: Job, variables: dict[str, str], override: str | None, endpoint: str, scripts: Path) -> Path | None:
    """Where the engines keep state: the definition's IAC_RUNNER_STATE_URL against AWS; otherwise a per-user
    folder, one per cloud, so that create and then destroy find the same state across runs. A definition that
    sets none gets one only when its job is the runner and the stack needs it."""
    given = override or variables.get("IAC_RUNNER_STATE_URL")
    if not given and "IAC_RUNNER_STATE_URL" not in job.variables:
        if not _needs_state(job, variables, scripts):
            return None
        log.warning(
            "the definition sets no IAC_RUNNER_STATE_URL, which its stack needs: the Container Driver's run would "
            "stop there (`iac-runner definition validate` reports it); here the state gets a per-user folder"
        )
    if given and (override or endpoint == "aws" or not given.startswith("s3://")):
        variables["IAC_RUNNER_STATE_URL"] = given
        return Path(given.removeprefix("file://")) if given.startswith("file://") else None
    key = endpoint if endpoint in ("moto", "aws") else endpoint.split("://", 1)[1].replace(":", "-").strip("/")
    folder = paths.private_dir(paths.state_home() / "emulate" / key)
    variables["IAC_RUNNER_STATE_URL"] = folder.as_uri()
    if given:
        reason = f"is {given} in the definition, which is not used against an emulator"
    elif "IAC_RUNNER_STATE_URL" in job.variables:
        reason = "is a placeholder here"
    else:
        reason = "is not set by the definition"
    log.step(f"state: {folder} (IAC_RUNNER_STATE_URL {reason}; this per-user folder keeps create and destroy "
             f"working across runs)")  # fmt: skip
    if endpoint == "moto":
        log.warning(
            "the embedded moto starts empty on every run while this state remains: to create and destroy across "
            "runs, keep one emulator running (python -m iac_runner.local.cloud PORT) and pass --endpoint http://127.0.0.1:PORT"
        )
    return folder


def _needs_state(job: Job, variables: Mapping[str, str], scripts: Path) -> bool:
    """Whether the runner needs IAC_RUNNER_STATE_URL: not for another program, nor for a backend that keeps its
    own state or a stack that declares its own backend (in its folder or among the driver's files that join it)."""
    if not _is_runner(job):
        return False
    name = variables.get("IAC_RUNNER_BACKEND")
    # The runner's own checkout happens inside the job: the stack is not in the shared directory yet.
    own_checkout = bool(variables.get("IAC_RUNNER_SOURCE_URL"))
    folder = None if own_checkout else _stack(scripts, variables.get("IAC_RUNNER_SOURCE_PATH"))
    backend: Backend
    if name in backends.names():
        backend = backends.get(name)
    elif name or folder is None:
        return True  # an unknown backend the runner will name, or one it detects later: let it have a place
    else:
        try:
            backend = backends.detect(folder)
        except ConfigError:
            return True  # no stack there: the runner says so
    return backend.needs_state(folder) and not layout.companions_keep_state(backend, scripts)


def _stack(scripts: Path, subpath: str | None) -> Path | None:
    try:
        return stack_folder(scripts, subpath, "shared directory")
    except ConfigError:
        return None  # the runner reports a path that is not there


# -- the job -------------------------------------------------------------------------------------------------


def _is_runner(job: Job) -> bool:
    """Whether the job's command is iac-runner (no command: the image's entrypoint, iac-runner in our image)."""
    return not job.command or Path(job.command[0]).name == "iac-runner"


def _host_variables() -> set[str]:
    return {*HOST_VARIABLES, *(var for name in backends.names() for var in backends.get(name).host_variables)}


def _run(
    job: Job,
    origin: _Origin,
    scripts: Path,
    job_env: dict[str, str],
    *,
    docker: bool,
    state_dir: Path | None,
    deadline: Deadline,
) -> int:
    if docker:
        argv = _docker_argv(job, scripts, sorted(job_env), state_dir)
        env = {**os.environ, **job_env}
    else:
        argv = _local_argv(job, scripts)
        env = {**{k: os.environ[k] for k in _host_variables() if k in os.environ}, **job_env}
        _check_command(job, origin, argv[0], scripts, env.get("PATH", ""))
    names = ", ".join(sorted(k for k in job_env if k not in CONTRACT_FILES))
    log.step(f"job: {' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''}")
    log.info(f"job environment: {names}")
    done = process.run(
        argv,
        engine="job",
        deadline=deadline,
        cwd=scripts,
        env=env,
        on_stdout=_echo,
        on_stderr=_echo,
        doing="running the job",
    )
    return done.returncode


def _echo(line: str) -> None:
    """The job's log (the pod's), indented under ours; passed through as is when ours is JSON lines."""
    sys.stderr.write(f"{line}\n" if log.format == "json" else f"  | {line}\n")
    sys.stderr.flush()


def _local_argv(job: Job, scripts: Path) -> list[str]:
    """The job's command for a local process: `iac-runner` is this checkout's runner; paths under the job's
    shared directory point into the emulated one."""
    command = job.command or ["iac-runner", "container"]
    if not job.command:
        log.info("the job has no command: the image's entrypoint (iac-runner container) is assumed")
    if _is_runner(job):
        # -P: the job works in the shared directory, where a checkout of this repository has its own iac_runner/.
        command = [sys.executable, "-P", "-m", "iac_runner", *command[1:]]
    shared = job.shared_directory.rstrip("/")
    return [
        str(scripts) + arg[len(shared) :] if arg == shared or arg.startswith(shared + "/") else arg for arg in command
    ]


def _check_command(job: Job, origin: _Origin, program: str, scripts: Path, search: str) -> None:
    """The job's program must be here to run as a local process; if not, say which and how to fix it."""
    found = shutil.which(program, path=search) if "/" not in program else str(scripts / program)
    if found and Path(found).is_file() and os.access(found, os.X_OK):
        return
    assert job.command is not None  # without a command the job is this runner, which is always here
    command = " ".join(job.command)
    where = "{}:{} (job.command)".format(*origin.line("command"))
    shared = job.shared_directory.rstrip("/")
    first = job.command[0]
    if first == shared or first.startswith(shared + "/"):
        raise ConfigError(
            f"The job's command `{command}` starts {first}, which is not in the shared directory: neither the "
            "source nor `files` put it there.",
            where=where,
            fix=f"Add it to `files` (files.{first[len(shared) + 1 :] or 'NAME'}) or to the repository at that path, "
            "or correct job.command.",
        )
    if "/" in first:
        raise ConfigError(
            f"The job's command `{command}` starts {first}, a program of the image {job.image}: it is not on "
            "this machine.",
            where=where,
            fix="Run the image itself with --docker; for the iac-driver-runner image set job.command to "
            '["iac-runner", "container"], which emulate runs from this checkout.',
        )
    raise ConfigError(
        f"The job's command `{command}` starts {first}, which is not on PATH here.",
        where=where,
        fix=f"Check the spelling in job.command; if {first} is in the image {job.image}, run it with --docker, or "
        f"install {first} here.",
    )


def _docker_argv(job: Job, scripts: Path, names: list[str], state_dir: Path | None) -> list[str]:
    """The job as a hardened pod runs it: UID 1000, a read-only root filesystem, a writable /tmp and HOME."""
    home = scripts.parent / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)  # the image's user (uid 1000) owns nothing here
    argv = ["docker", "run", "--rm", "--user", "1000:1000", "--network", "host", "--read-only"]
    argv += ["--tmpfs", "/tmp"]  # noqa: S108 - the container's own /tmp, a fresh tmpfs
    argv += ["--volume", f"{home}:/home/runner"]
    argv += ["--volume", f"{scripts}:{job.shared_directory}", "--workdir", job.shared_directory]
    if state_dir is not None:
        argv += ["--volume", f"{state_dir}:{state_dir}"]
    for name in names:
        argv += ["--env", name]  # the value comes from docker's own environment, never from its arguments
    if job.command:
        return [*argv, "--entrypoint", job.command[0], job.image, *job.command[1:]]
    return [*argv, job.image]


def _check_docker() -> None:
    if shutil.which("docker") is None:
        raise ConfigError(
            "--docker needs the docker CLI, which is not on PATH.",
            fix="Install Docker, or run without --docker: the job then runs this checkout's runner, as the image "
            "would.",
        )
    try:
        done = process.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            engine="docker",
            deadline=Deadline(30),
            on_stdout=lambda line: None,
            on_stderr=lambda line: None,
        )
    except EngineError as exc:
        raise ConfigError(exc.summary, fix=exc.fix) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise ConfigError(
            "--docker needs a Docker engine, and none answered.",
            where="docker version",
            fix="Start Docker (or point DOCKER_HOST at an engine), or run without --docker: the job then runs this "
            "checkout's runner, as the image would.",
            details=reason,
        )


# -- what the job left ------------------------------------------------------------------------------------


def _collect(scripts: Path, code: int, given: Mapping[str, str], command: str) -> EmulateResult:
    """What the driver reads back. `given`: the paths the job was given; `command`: where the job's command is."""
    read: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for name in ("OUTPUTS_FILE", "SECRET_OUTPUTS_FILE"):
        try:
            data = json.loads((scripts / CONTRACT_FILES[name]).read_text())
        except (OSError, ValueError) as exc:
            data, why = {}, "was not written" if isinstance(exc, FileNotFoundError) else "is not valid JSON"
        else:
            why = "" if isinstance(data, dict) else "does not hold a JSON object"
        read[name] = data if isinstance(data, dict) else {}
        if why:
            missing.append(f"{name} ({given[name]}) {why}")
    secrets = read["SECRET_OUTPUTS_FILE"]
    REGISTRY.add_all(secrets.values())
    error_path = scripts / CONTRACT_FILES["ERROR_FILE"]
    error = error_path.read_text() if error_path.is_file() else None
    if code == 0 and missing:
        failure = ConfigError(
            f"The job exited 0, but {' and '.join(missing)}: the Container Driver fails such a run.",
            where=f"{command} (job.command)",
            fix="On success the job must write both files, {} where empty, at the paths OUTPUTS_FILE and "
            "SECRET_OUTPUTS_FILE give (absolute paths, as the driver's are).",
        )
        log.error(failure.summary)
        log.info(f"fix: {failure.fix}")
        return EmulateResult(int(ExitCode.ENGINE), {}, {}, failure.render())
    if code == 0:
        log.step(f"job succeeded: {len(read['OUTPUTS_FILE'])} output(s), {len(secrets)} secret output(s)")
    else:
        first = (error or "(no error file)").splitlines()[0] if (error or "").strip() else "(empty error file)"
        log.error(f"job failed with exit code {code}: {first}")
    return EmulateResult(code, read["OUTPUTS_FILE"], secrets, error)


def _copy_out(scripts: Path, out_dir: Path) -> None:
    for name, mode in (("OUTPUTS_FILE", 0o644), ("SECRET_OUTPUTS_FILE", 0o600), ("ERROR_FILE", 0o644)):
        source = scripts / CONTRACT_FILES[name]
        target = out_dir / CONTRACT_FILES[name]
        if source.is_file():
            write_atomic(target, source.read_text(), mode)
        elif target.exists():
            target.unlink()
    log.info(f"the driver's files are in {out_dir}")
