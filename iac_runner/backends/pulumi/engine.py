"""How the Pulumi engine is driven: which CLI, language host and Automation API SDK (their versions, and the
pairings known not to work), its environment (state backend, secrets provider), and the Python that runs the
program.

The tools step pairs the newest CLI the Go module proxy serves with the newest Python language host it serves,
3.79.0 (tools/README.md). CLIs after 3.79 no longer start the host with the project's runtime options as flags:
they send them over gRPC, which that host does not read. So the runner chooses the program's interpreter
itself, the same way for every pairing: the project's virtualenv, activated in the engine's environment.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import selectors
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

from iac_runner.backends.base import EngineUnavailable
from iac_runner.common import aws, paths, process
from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent

PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 - the variable's name

# gRPC's fork handlers print "Other threads are currently calling into gRPC, skipping fork() handlers" into the
# job's log whenever an engine process starts while the Automation API's threads run. Nothing uses gRPC in a
# forked child (engines are exec'd at once), so they are off; gRPC reads this once, when first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def find_cli() -> str:
    found = paths.find_executable("pulumi")
    if found is None:
        raise EngineUnavailable(
            "'pulumi' is not on PATH: run `make tools` (builds the pinned Pulumi CLI and Python language host into "
            ".tools/bin) or install the Pulumi CLI"
        )
    return found


def find_cli_or_fail() -> str:
    try:
        return find_cli()
    except EngineUnavailable as exc:
        raise ConfigError(f"The Pulumi engine is not available: {exc}.", fix="See `iac-runner backends`.") from None


def base_env(env: dict[str, str], cli: str) -> dict[str, str]:
    """The engine's environment: the pinned CLI's folder first on PATH (its language host and the dynamic
    provider's plugin live beside it), no update checks."""
    env["PATH"] = f"{Path(cli).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def pulumi_home() -> Path:
    return paths.TOOLS / "pulumi-home" if paths.TOOLS.is_dir() else paths.cache_home() / "pulumi-home"


def usable_home(home: Path) -> Path:
    """PULUMI_HOME, or when it cannot be written (a read-only root filesystem), a private one under the temp dir
    that still finds the plugins installed in it."""
    usable = paths.writable(home, "Pulumi home", setting="PULUMI_HOME")
    if usable != home and (home / "plugins").is_dir() and not (usable / "plugins").exists():
        (usable / "plugins").symlink_to(home / "plugins", target_is_directory=True)
    return usable


def check_passphrase(env: dict[str, str], has_secret_inputs: bool) -> None:
    """The passphrase secrets provider needs PULUMI_CONFIG_PASSPHRASE as soon as there is a secret to encrypt."""
    if PASSPHRASE in env or f"{PASSPHRASE}_FILE" in env:
        REGISTRY.add(env.get(PASSPHRASE, ""))
        return
    if has_secret_inputs:
        raise ConfigError(
            f"{PASSPHRASE} is not set, but the stack has secret inputs to encrypt.",
            where="the job's environment",
            fix=f"Set {PASSPHRASE} (from a secret) to the stack's passphrase; keep it the same for every run of the "
            "stack.",
        )
    log.warning(f"{PASSPHRASE} is not set: the stack's secrets are encrypted with an empty passphrase")
    env[PASSPHRASE] = ""


def backend_url(state_url: str, env: Mapping[str, str]) -> str:
    """IAC_RUNNER_STATE_URL as PULUMI_BACKEND_URL (an S3 URL carries the region and the emulator's endpoint)."""
    parts = urlsplit(state_url)
    if parts.scheme != "s3":
        return state_url
    query: dict[str, str] = {"region": aws.region(env)}
    endpoint = aws.s3_endpoint(env)
    if endpoint:
        point = urlsplit(endpoint)
        query.update({"endpoint": point.netloc, "s3ForcePathStyle": "true"})
        if point.scheme == "http":
            query["disableSSL"] = "true"
    return f"s3://{parts.netloc}{parts.path.rstrip('/')}?{urlencode(query)}"


def make_state_dir(state_url: str) -> None:
    """A `file://` state folder is created on first use (private: the state holds the stack's secrets), as tofu
    does; pulumi refuses a missing one."""
    parts = urlsplit(state_url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        try:
            paths.private_dir(Path(unquote(parts.path)))
        except OSError as exc:
            raise ConfigError(
                f"The state folder {parts.path} cannot be created: {exc.strerror}.",
                where=f"IAC_RUNNER_STATE_URL={state_url}",
                fix="Point IAC_RUNNER_STATE_URL at a writable folder (file:///abs/dir) or an S3 bucket.",
            ) from None


def state_note(env: Mapping[str, str]) -> str:
    url = env.get("PULUMI_BACKEND_URL")
    return f", state at {url.split('?')[0]}" if url else ""


Runner = Callable[[list[str], str], object]


def virtualenv(folder: Path, venv: Path, run: Runner) -> Path:
    """The project's virtualenv, made the way `pulumi install` would and reused while its requirements stay the
    same: a cached venv per requirements file, linked where Pulumi.yaml expects it; returns where that is.
    `run(argv, doing)` runs a command through the session's process seam."""
    requirements = folder / "requirements.txt"
    target = venv if venv.is_absolute() else folder / venv
    if (target / "bin" / "python").exists():
        return target
    import hashlib  # here: detection imports this module for any stack, and needs no OpenSSL (~3 ms)

    digest = hashlib.sha256(requirements.read_bytes() if requirements.is_file() else b"").hexdigest()[:16]
    venvs = paths.writable(paths.cache_home() / "venvs", "virtualenv cache")
    cached = venvs / f"{digest}-py{sys.version_info.major}{sys.version_info.minor}"
    if not (cached / ".complete").exists():
        log.step(f"creating the project's virtualenv from {requirements.name} (cached for reuse)")
        shutil.rmtree(cached, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(cached)], "creating the virtualenv")
        if requirements.is_file():
            pip = [str(cached / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            run([*pip, "-r", str(requirements)], "installing the project's requirements")
        (cached / ".complete").touch()
    else:
        log.info(f"reusing the cached virtualenv for {requirements.name} ({digest})")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink() if target.is_symlink() else shutil.rmtree(target)
    target.symlink_to(cached, target_is_directory=True)
    return target


def activate(env: dict[str, str], venv: Path | None) -> None:
    """The program's Python for the engine, whatever the CLI passes to the language host. With a virtualenv:
    that virtualenv activated (its bin/ first on PATH), and `PULUMI_PYTHON_CMD` a bare `python`: a host started
    without the option runs `python` from PATH, and a 3.79 host started with `-virtualenv` (by a 3.79 CLI) looks
    the name up inside the virtualenv. Without one: the runner's own Python, which has the SDK."""
    if venv is None:
        env["PULUMI_PYTHON_CMD"] = sys.executable
        return
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PULUMI_PYTHON_CMD"] = "python"
    env.pop("PYTHONHOME", None)


def guarded(callback: Callable[[EngineEvent], None]) -> Callable[[EngineEvent], None]:
    """An engine-event callback that never raises: the Automation API would print the failing event, resource
    properties and all, as a Python warning."""

    def call(event: EngineEvent) -> None:
        try:
            callback(event)
        except Exception as exc:
            log.debug(f"engine event not shown: {type(exc).__name__}: {exc}")

    return call


# -- versions --------------------------------------------------------------------------------------------------

HOST = "pulumi-language-python"
#: The oldest Automation API the backend drives: `PulumiCommand` for `LocalWorkspaceOptions(pulumi_command=...)`,
#: and an event stream that ends with its command (older SDKs poll the event log forever when a command fails
#: before the engine starts).
SDK_MIN = (3, 206, 0)
#: The last Python language host that reads runtime options from flags. A CLI of that age passes every option
#: as a flag, and the host exits on one it does not know.
LAST_FLAG_HOST = (3, 79, 0)


def parse_version(text: str) -> tuple[int, int, int] | None:
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


@dataclass(frozen=True)
class Engine:
    """The CLI, the Python language host it starts and the runner's Automation API SDK."""

    cli: str
    cli_version: str
    #: None: no host is found, only inline programs would run.
    host: str | None
    host_version: str | None
    sdk_version: str

    def describe(self) -> str:
        host = f"language host v{self.host_version} ({self.host})" if self.host else f"no {HOST} found"
        return f"pulumi v{self.cli_version} ({self.cli}), {host}, Automation API {self.sdk_version}"

    def check(self, options: Mapping[str, Any], where: str) -> None:
        """A pairing known not to run this project is a configuration error (exit 2)."""
        if self.host is None:
            raise ConfigError(
                f"pulumi v{self.cli_version} has no Python language host: {HOST} is neither beside it nor on PATH.",
                where=where,
                fix="Run `make tools` (it builds the host into .tools/bin), or install the Pulumi CLI with its "
                "language hosts.",
            )
        old = parse_version(self.cli_version) or (0, 0, 0)
        host = parse_version(self.host_version or "") or (0, 0, 0)
        if "toolchain" in options and max(old, host) <= LAST_FLAG_HOST:
            raise ConfigError(
                f"pulumi v{self.cli_version} passes the runtime option 'toolchain' to its language host "
                f"v{self.host_version} as a flag, which that host does not know (flag provided but not defined: "
                "-toolchain).",
                where=where,
                fix="Use the CLI `make tools` builds (pulumi 3.276 runs this host with `toolchain: pip`), or drop "
                "`toolchain: pip` from Pulumi.yaml: the runner makes the virtualenv with pip anyway.",
            )


def probe(cli: str) -> Engine:
    """The engine at `cli`: its version, the language host it starts and that host's version, the SDK's. Raises
    EngineUnavailable when one of them is missing or the SDK is older than the backend needs."""
    cli_version, host, host_version = _cli_and_host(cli, os.environ.get("PATH", ""))
    return Engine(cli, cli_version, host, host_version, sdk_version())


def probe_or_fail(cli: str) -> Engine:
    try:
        return probe(cli)
    except EngineUnavailable as exc:
        raise ConfigError(f"The Pulumi engine is not available: {exc}.", fix="See `iac-runner backends`.") from None


def sdk_version() -> str:
    try:
        sdk = importlib.metadata.version("pulumi")
    except importlib.metadata.PackageNotFoundError:
        raise EngineUnavailable(
            "the pulumi Python SDK is not installed (pip install 'iac-driver-runner[pulumi]')"
        ) from None
    if (parse_version(sdk) or (0, 0, 0)) < SDK_MIN:
        floor = ".".join(map(str, SDK_MIN))
        raise EngineUnavailable(
            f"the runner's Automation API is pulumi {sdk}, older than {floor}, the oldest SDK the pulumi backend "
            f"drives; install a current one into {sys.executable}: pip install 'pulumi>={floor},<4' (or "
            "'iac-driver-runner[pulumi]')"
        )
    return sdk


@functools.cache
def _cli_and_host(cli: str, path: str) -> tuple[str, str | None, str | None]:
    done = process.run(
        [cli, "version"],
        engine="pulumi",
        deadline=process.Deadline(30),
        env=base_env({**os.environ, "PATH": path}, cli),
        on_stdout=lambda line: None,
        on_stderr=lambda line: None,
    )
    version = done.stdout.strip().removeprefix("v")
    if done.returncode != 0 or parse_version(version) is None:
        raise EngineUnavailable(f"{cli} version failed: {done.stderr.strip()[:200]}")
    # Where the CLI looks for a language host: beside itself (symlinks resolved), then on PATH.
    host = shutil.which(HOST, path=os.pathsep.join([str(Path(cli).resolve().parent), str(Path(cli).parent), path]))
    return version, host, _host_version(host) if host else None


def _host_version(host: str) -> str:
    """The host's answer to GetPluginInfo (it has no version flag)."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import language_pb2_grpc

    # It wants an engine address to health-check; nothing needs to listen there for the second this takes.
    with process.TrackedPopen(
        [host, "127.0.0.1:1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as child:
        try:
            assert child.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(child.stdout, selectors.EVENT_READ)
                port = child.stdout.readline().decode().strip() if selector.select(timeout=15) else ""
            if not port.isdigit():
                raise EngineUnavailable(f"{host} did not start its gRPC server")
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                info = language_pb2_grpc.LanguageRuntimeStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=15)
            return str(info.version).removeprefix("v")
        except grpc.RpcError as exc:
            raise EngineUnavailable(f"{host} did not answer GetPluginInfo: {exc.code()}") from None
        finally:
            child.kill()
