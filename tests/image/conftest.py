"""The image tier's fixtures: a Docker engine, the built image, and jobs run the way the Container Driver runs them.

A job is `docker run` of the image as UID 1000 with a read-only root filesystem, a writable /tmp (tmpfs) and a
fresh HOME volume (what a hardened pod has: `readOnlyRootFilesystem: true` plus emptyDirs), the contract's
environment, SCRIPTS_DIRECTORY mounted, and the host network to reach the suite's moto on loopback.

The engine comes from tools/docker-engine.sh (started for the session when none answers, and stopped again
afterwards); the image from image/build.sh (what `make image` runs), unless IAC_RUNNER_IMAGE names one already
built. Where no engine can be had the tier fails with the reason, unless IAC_RUNNER_SKIP_IMAGE_TESTS=1 (then it
skips, saying why).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Result, check_no_leak

ENGINE = ROOT / "tools" / "docker-engine.sh"
BUILD = ROOT / "image" / "build.sh"
DEFAULT_TAG = "iac-driver-runner:local"
UID = 1000
HOME = "/home/runner"
SCRIPTS = "/scripts"  # where a job sees SCRIPTS_DIRECTORY
# The driver's file names, relative to SCRIPTS_DIRECTORY as the orchestrator's examples give them.
FILES = {"values": "outputs.json", "secrets": "secret-outputs.json", "error": "error.txt"}


def _no_engine(reason: str) -> None:
    if os.environ.get("IAC_RUNNER_SKIP_IMAGE_TESTS") == "1":
        pytest.skip(f"image tier skipped (IAC_RUNNER_SKIP_IMAGE_TESTS=1): {reason}")
    pytest.fail(
        f"The image tier needs a Docker engine: {reason}\n"
        "Set IAC_RUNNER_SKIP_IMAGE_TESTS=1 to skip it on a machine without one.",
        pytrace=False,
    )


def _write_line(config: pytest.Config, line: str) -> None:
    """A line on the terminal even while pytest captures the output (fixtures run captured)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def docker(request: pytest.FixtureRequest) -> Iterator[str]:
    """The docker client (one that builds with BuildKit), with an engine answering; an engine started here is
    stopped at the end of the session."""
    was_running = subprocess.run([str(ENGINE), "status"], capture_output=True, check=False).returncode == 0
    started = subprocess.run([str(ENGINE), "start"], capture_output=True, text=True, check=False, timeout=600)
    if started.returncode != 0:
        _no_engine(started.stderr.strip().removeprefix("[docker-engine] FAILED: "))
    client = subprocess.run([str(ENGINE), "client"], capture_output=True, text=True, check=False)
    if client.returncode != 0:
        _no_engine(client.stderr.strip())
    try:
        yield client.stdout.strip()
    finally:
        if not was_running:
            stopped = subprocess.run([str(ENGINE), "stop"], capture_output=True, text=True, check=False, timeout=120)
            _write_line(request.config, f"image tier: {stopped.stderr.strip()}")


@pytest.fixture(scope="session")
def image(docker: str, request: pytest.FixtureRequest) -> str:
    """The image under test: IAC_RUNNER_IMAGE when given (it must exist), else built now by image/build.sh."""
    given = os.environ.get("IAC_RUNNER_IMAGE")
    if given:
        found = subprocess.run([docker, "image", "inspect", given], capture_output=True, check=False)
        assert found.returncode == 0, f"IAC_RUNNER_IMAGE={given} is not an image of this engine"
        return given
    log = ROOT / ".tools" / "image-build" / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as out:
        built = subprocess.run(
            [str(BUILD)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "IMAGE_TAG": DEFAULT_TAG},
            check=False,
        )
    text = log.read_text()
    assert built.returncode == 0, f"image/build.sh failed (log: {log}):\n" + "\n".join(text.splitlines()[-40:])
    summary = [line for line in text.splitlines() if line.startswith("[image] built ")]
    took = time.monotonic() - started
    _write_line(request.config, f"image tier: {summary[-1] if summary else 'built'} (fixture: {took:.0f}s)")
    return DEFAULT_TAG


@dataclass
class Job:
    """One finished `docker run` of the image, with the driver's files in its SCRIPTS_DIRECTORY."""

    result: Result
    scripts: Path


class DockerJob:
    """Runs the image as the Container Driver does: one job (a fresh container and a fresh HOME) per run."""

    def __init__(self, docker: str, image: str, root: Path, env: Mapping[str, str]) -> None:
        self.docker = docker
        self.image = image
        self.root = root
        self.env = dict(env)
        self.runs = 0

    def scripts_dir(self, stack: Path | None, files: Mapping[str, str] | None) -> Path:
        """A fresh shared directory holding the stack's files (as the driver's `files`/checkout put them),
        writable by the job's user."""
        self.runs += 1
        scripts = self.root / f"run{self.runs}"
        if stack is not None:
            shutil.copytree(stack, scripts, ignore=shutil.ignore_patterns(".terraform", "__pycache__", "Pulumi.*.yaml"))
        else:
            scripts.mkdir(parents=True)
        for name, text in (files or {}).items():
            (scripts / name).parent.mkdir(parents=True, exist_ok=True)
            (scripts / name).write_text(text)
        for path in (scripts, *scripts.rglob("*")):
            if os.geteuid() == 0:
                os.chown(path, UID, UID)
            elif path.is_dir():
                path.chmod(0o777)  # not root: the job's UID 1000 is someone else here
        return scripts

    def argv(self, name: str, scripts: Path, env_names: list[str], *, detach: bool = False) -> list[str]:
        argv = [self.docker, "run", "--name", name, "--network", "host", "--user", f"{UID}:{UID}"]
        argv += ["--read-only", "--tmpfs", "/tmp", "--volume", HOME]  # an anonymous volume: a fresh HOME
        argv += ["--volume", f"{scripts}:{SCRIPTS}"]
        for key in env_names:
            argv += ["--env", key]  # the value comes from the client's environment: no secret on a command line
        argv += ["--detach"] if detach else []
        return [*argv, self.image]

    def environment(
        self, action: str, inputs: Mapping[str, Any] | None, secrets: Mapping[str, str] | None, scripts: Path
    ) -> dict[str, str]:
        env = {
            **self.env,
            "ACTION": action,
            "SCRIPTS_DIRECTORY": SCRIPTS,
            "OUTPUTS_FILE": FILES["values"],
            "SECRET_OUTPUTS_FILE": FILES["secrets"],
            "ERROR_FILE": FILES["error"],
        }
        if inputs is not None:
            (scripts / "inputs.json").write_text(json.dumps(inputs))
            env["RESOURCE_INPUTS_FILE"] = "inputs.json"
        env.update({f"IAC_RUNNER_SECRET_{k}": v for k, v in (secrets or {}).items()})
        return env

    def result(self, code: int, stdout: str, stderr: str, scripts: Path) -> Job:
        result = Result(code, stdout, stderr, scripts, {k: scripts / v for k, v in FILES.items()})
        check_no_leak(result)
        return Job(result, scripts)

    def run(
        self,
        action: str,
        stack: Path | None,
        *,
        inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> Job:
        scripts = self.scripts_dir(stack, files)
        env = self.environment(action, inputs, secrets, scripts)
        name = f"iac-image-test-{uuid.uuid4().hex[:10]}"
        try:
            proc = subprocess.run(
                self.argv(name, scripts, sorted(env)),
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            subprocess.run([self.docker, "rm", "--force", "--volumes", name], capture_output=True, check=False)
        return self.result(proc.returncode, proc.stdout, proc.stderr, scripts)

    def interrupted(
        self,
        action: str,
        stack: Path | None,
        *,
        when: str,
        inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        stop_timeout: int = 30,
    ) -> Job:
        """A job stopped as Kubernetes stops a pod (`docker stop -t`: SIGTERM, SIGKILL after the grace period)
        once its log shows `when`."""
        scripts = self.scripts_dir(stack, files)
        env = self.environment(action, inputs, secrets, scripts)
        name = f"iac-image-test-{uuid.uuid4().hex[:10]}"
        try:
            started = subprocess.run(
                self.argv(name, scripts, sorted(env), detach=True),
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=False,
            )
            assert started.returncode == 0, f"docker run failed: {started.stderr}"
            deadline = time.monotonic() + 300
            while True:
                logs = subprocess.run([self.docker, "logs", name], capture_output=True, text=True, check=False)
                if when in logs.stdout + logs.stderr:
                    break
                state = subprocess.run(
                    [self.docker, "inspect", "--format", "{{.State.Running}}", name],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert state.stdout.strip() == "true", f"the job ended before {when!r}:\n{logs.stdout}{logs.stderr}"
                assert time.monotonic() < deadline, f"{when!r} did not show up in the job's log:\n{logs.stdout}"
                time.sleep(0.2)
            subprocess.run([self.docker, "stop", "-t", str(stop_timeout), name], capture_output=True, check=True)
            waited = subprocess.run([self.docker, "wait", name], capture_output=True, text=True, check=True)
            logs = subprocess.run([self.docker, "logs", name], capture_output=True, text=True, check=False)
        finally:
            subprocess.run([self.docker, "rm", "--force", "--volumes", name], capture_output=True, check=False)
        return self.result(int(waited.stdout.strip()), logs.stdout, logs.stderr, scripts)

    def cli(self, *args: str, mounts: Mapping[Path, str] | None = None) -> Result:
        """`iac-runner ARGS` in the image (not the contract's entrypoint), with the same hardening."""
        argv = [self.docker, "run", "--rm", "--network", "none", "--user", f"{UID}:{UID}"]
        argv += ["--read-only", "--tmpfs", "/tmp", "--volume", HOME]
        for host, target in (mounts or {}).items():
            argv += ["--volume", f"{host}:{target}:ro"]
        proc = subprocess.run(
            [*argv, "--entrypoint", "iac-runner", self.image, *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        check_no_leak(result)
        return result
