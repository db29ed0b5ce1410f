"""`iac-runner driver emulate DEFINITION.yaml`: run a resource definition here as the Container Driver would run
it in the cluster, before it is pushed.

What the driver does, in order: a fresh shared directory (SCRIPTS_DIRECTORY), the definition's `source` checked
out into it and its `files` written there (layout.py), `job.variables` and the resolved secret variables
set, the cloud credentials mapped in, the contract's own variables set (ACTION, SCRIPTS_DIRECTORY, OUTPUTS_FILE,
SECRET_OUTPUTS_FILE, ERROR_FILE), then the job's command run. Here that command runs as a local process through the
process seam (the runner of this checkout when the command is `iac-runner`), or in the image with `--docker`.

Placeholders the orchestrator would resolve are resolved from a demo context (`--placeholder` sets any of them).
Secrets come from `--secret` or the environment; a missing one stops the run before anything happens. The cloud
is the embedded moto by default (when no AWS credentials are set), a running emulator's URL, or real AWS.
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

from iac_runner import backends
from iac_runner.common import paths, process
from iac_runner.common.errors import ConfigError, EngineError
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.process import Deadline, forward_signals
from iac_runner.common.secrets import MASK, REGISTRY
from iac_runner.humanitec import layout
from iac_runner.humanitec.document import Document, load_file
from iac_runner.humanitec.model import (
    ContainerInputs,
    Definition,
    Job,
    context_values,
    resolve,
)
from iac_runner.humanitec.validate import SECRET_VARIABLES, SECRETS, VALUES, VARIABLES, check_static
from iac_runner.job import contract
from iac_runner.job.settings import SECRET_PREFIX, load_inputs_file
from iac_runner.job.source import SourceError

DriverAction = Literal["create", "destroy"]
INPUTS_FILE = "resource-inputs.json"
CONTRACT_FILES = contract.FILES
# What a local process needs of this machine to run at all; everything else the job gets from the definition.
HOST_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "NO_COLOR", "TZ", "TMPDIR",
    "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH",
    "TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR", "PULUMI_HOME", "PULUMI_SKIP_UPDATE_CHECK",
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
    job = inputs.job
    if job is None:
        raise ConfigError(
            "driver_inputs.values.job is a placeholder, so there is no job to run here.",
            where=f"{doc.file}:{doc.line((*VALUES, 'job'))}",
            fix="Write the job out (image, command, shared_directory, variables) in the definition you emulate.",
        )
    context = context_values(definition, request.placeholders)
    variables = _variables(doc, job, context)
    secrets = _Secrets.resolve(doc, inputs, request.secrets, os.environ, context)
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
            context=context,
            variables=variables,
            deadline=deadline,
        )
        cloud = stack.enter_context(_cloud(endpoint, inputs))
        state_dir = _state(variables, request.state_url, endpoint)
        shared = job.shared_directory if request.docker else str(scripts)
        contract = {"ACTION": request.action, "SCRIPTS_DIRECTORY": shared, **CONTRACT_FILES}
        job_env = {**cloud, **variables, **secrets.variables, **contract, "PYTHONUNBUFFERED": "1"}
        code = _run(job, scripts, job_env, docker=request.docker, state_dir=state_dir, deadline=deadline)
        result = _collect(scripts, code)
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


def _variables(doc: Document, job: Job, context: Mapping[str, str]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, value in job.variables.items():
        text, missing = resolve(value, context)
        if missing and name == "IAC_RUNNER_STATE_URL":
            log.info(f"IAC_RUNNER_STATE_URL is a placeholder here (${{{missing[0]}}})")
            continue
        if missing:
            raise _unresolved(doc, (*VARIABLES, name), f"job variable {name}", missing[0])
        resolved[name] = text
    return resolved


def _unresolved(doc: Document, loc: tuple[str, ...], what: str, expression: str) -> ConfigError:
    return ConfigError(
        f"The placeholder ${{{expression}}} of {what} cannot be resolved here.",
        where=f"{doc.file}:{doc.line(loc)}",
        fix=f'Give its value: --placeholder "{expression}=VALUE" (the orchestrator resolves it in a deployment).',
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
        context: Mapping[str, str],
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
                text, unresolved = resolve(value, context)
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
        path = Path(tempfile.mkdtemp(prefix="iac-runner-emulate-"))
        log.info(f"--keep: the shared directory stays at {path}")
    else:
        path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iac-runner-emulate-")))
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
    context: Mapping[str, str],
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
        content, missing = resolve(text, context)
        if missing and name not in replaced:
            raise _unresolved(doc, (*VALUES, "files", name), f"files entry {name}", missing[0])
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
        for path in (scripts, *scripts.rglob("*")):
            if path.is_dir():
                path.chmod(0o777)  # the image's user (uid 1000) writes the outputs there


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


def _state(variables: dict[str, str], override: str | None, endpoint: str) -> Path | None:
    """Where the engines keep state: the definition's IAC_RUNNER_STATE_URL against AWS; otherwise a per-user
    folder, one per cloud, so that create and then destroy find the same state across runs."""
    given = override or variables.get("IAC_RUNNER_STATE_URL")
    backend = variables.get("IAC_RUNNER_BACKEND")
    if not given and backend in backends.names() and not backends.get(backend).needs_state(None):
        return None  # the engine keeps its own state
    if given and (override or endpoint == "aws" or not given.startswith("s3://")):
        variables["IAC_RUNNER_STATE_URL"] = given
        return Path(given.removeprefix("file://")) if given.startswith("file://") else None
    key = endpoint if endpoint in ("moto", "aws") else endpoint.split("://", 1)[1].replace(":", "-").strip("/")
    folder = paths.private_dir(paths.state_home() / "emulate" / key)
    variables["IAC_RUNNER_STATE_URL"] = folder.as_uri()
    reason = f"is {given} in the definition, which is not used against an emulator" if given else "is not set here"
    log.step(f"state: {folder} (IAC_RUNNER_STATE_URL {reason}; this per-user folder keeps create and destroy "
             f"working across runs)")  # fmt: skip
    if endpoint == "moto":
        log.warning(
            "the embedded moto starts empty on every run while this state remains: to create and destroy across "
            "runs, keep one emulator running (python -m iac_runner.local.cloud PORT) and pass --endpoint http://127.0.0.1:PORT"
        )
    return folder


# -- the job -------------------------------------------------------------------------------------------------


def _run(
    job: Job, scripts: Path, job_env: dict[str, str], *, docker: bool, state_dir: Path | None, deadline: Deadline
) -> int:
    if docker:
        argv = _docker_argv(job, scripts, sorted(job_env), state_dir)
        env = {**os.environ, **job_env}
    else:
        argv = _local_argv(job, scripts)
        env = {**{k: os.environ[k] for k in HOST_VARIABLES if k in os.environ}, **job_env}
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
    if Path(command[0]).name == "iac-runner":
        command = [sys.executable, "-m", "iac_runner", *command[1:]]
    shared = job.shared_directory.rstrip("/")
    return [
        str(scripts) + arg[len(shared) :] if arg == shared or arg.startswith(shared + "/") else arg for arg in command
    ]


def _docker_argv(job: Job, scripts: Path, names: list[str], state_dir: Path | None) -> list[str]:
    argv = ["docker", "run", "--rm", "--user", "1000:1000", "--network", "host"]
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


def _collect(scripts: Path, code: int) -> EmulateResult:
    def read_json(name: str) -> dict[str, Any]:
        path = scripts / CONTRACT_FILES[name]
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    secrets = read_json("SECRET_OUTPUTS_FILE")
    REGISTRY.add_all(secrets.values())
    error_path = scripts / CONTRACT_FILES["ERROR_FILE"]
    error = error_path.read_text() if error_path.is_file() else None
    if code == 0:
        log.step(f"job succeeded: {len(read_json('OUTPUTS_FILE'))} output(s), {len(secrets)} secret output(s)")
    else:
        first = (error or "(no error file)").splitlines()[0] if (error or "").strip() else "(empty error file)"
        log.error(f"job failed with exit code {code}: {first}")
    return EmulateResult(code, read_json("OUTPUTS_FILE"), secrets, error)


def _copy_out(scripts: Path, out_dir: Path) -> None:
    for name, mode in (("OUTPUTS_FILE", 0o644), ("SECRET_OUTPUTS_FILE", 0o600), ("ERROR_FILE", 0o644)):
        source = scripts / CONTRACT_FILES[name]
        target = out_dir / CONTRACT_FILES[name]
        if source.is_file():
            write_atomic(target, source.read_text(), mode)
        elif target.exists():
            target.unlink()
    log.info(f"the driver's files are in {out_dir}")
