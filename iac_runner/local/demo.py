"""`iac-runner demo`: every example stack, through the container contract, against the embedded cloud (moto).

For each example whose engine is available: a temp SCRIPTS_DIRECTORY, the stacks served from a local git
repository, `iac-runner container` with ACTION=create, the output files shown (secrets masked), then
ACTION=destroy. Ends with a summary; exits non-zero if any example failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from iac_runner import backends
from iac_runner.backends.base import EngineUnavailable
from iac_runner.common import paths
from iac_runner.common.errors import ConfigError, ExitCode
from iac_runner.common.log import log
from iac_runner.common.secrets import MASK
from iac_runner.job import contract
from iac_runner.local.cloud import Emulator, running


@dataclass(frozen=True)
class Example:
    family: str
    backend: str
    folder: Path

    @property
    def path(self) -> str:
        return f"stacks/{self.family}/{self.backend}"


@dataclass
class Outcome:
    example: Example
    status: str
    seconds: float = 0.0
    outputs: int = 0


def find_stacks() -> Path:
    for candidate in (Path.cwd() / "stacks", Path(__file__).resolve().parent.parent / "stacks"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        "The example stacks folder was not found.",
        where=f"{Path.cwd()}/stacks",
        fix="Run the demo from the repository's root (make demo).",
    )


def examples(stacks: Path) -> list[Example]:
    """Examples with emulator inputs (`<family>/inputs.json`); real-AWS-only families ship none."""
    found = []
    for family in sorted(p for p in stacks.iterdir() if (p / "inputs.json").is_file()):
        for folder in sorted(p for p in family.iterdir() if p.is_dir() and p.name in backends.names()):
            found.append(Example(family.name, folder.name, folder))
    return found


def run_demo() -> int:
    stacks = find_stacks()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="iac-runner-demo-", dir=paths.temp_dir()) as tmp, running() as cloud:
        log.step(f"embedded cloud: moto on {cloud.endpoint}")
        repo = _repo(stacks, Path(tmp) / "stacks.git")
        log.step(f"example stacks served from git repository {repo}")
        for example in examples(stacks):
            outcomes.append(_run_example(example, cloud, repo, Path(tmp)))
        outcomes.append(_emulate_definition(stacks, cloud, repo, Path(tmp)))
    _summary(outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    return ExitCode.ENGINE if failed or not outcomes else ExitCode.OK


def _run_example(example: Example, cloud: Emulator, repo: str, tmp: Path) -> Outcome:
    try:
        version = backends.get(example.backend).engine_version()
    except EngineUnavailable as exc:
        log.warning(f"{example.path}: skipped, engine unavailable: {exc}")
        return Outcome(example, f"skipped ({exc})")
    log.step(f"example {example.path} ({version})")
    started = time.monotonic()
    family = example.folder.parent
    secrets = (
        json.loads((family / "secret-inputs.json").read_text()) if (family / "secret-inputs.json").exists() else {}
    )
    env = {
        **os.environ,
        **cloud.env(),
        "IAC_RUNNER_SOURCE_URL": repo,
        "IAC_RUNNER_SOURCE_PATH": example.path,
        "IAC_RUNNER_STACK_NAME": f"demo-{example.family}-{example.backend}",
        "IAC_RUNNER_STATE_URL": (tmp / "state").as_uri(),
        "IAC_RUNNER_LOG_FORMAT": log.format,
        # The pulumi examples encrypt their secret config with it; a real job maps it from a secret.
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "demo-passphrase-not-secret"),
        **{f"IAC_RUNNER_SECRET_{k}": str(v) for k, v in secrets.items()},
    }
    outputs = 0
    for action in ("create", "destroy"):
        scripts = tmp / f"{example.family}-{example.backend}-{action}"
        scripts.mkdir()
        shutil.copy(family / "inputs.json", scripts / "inputs.json")
        job = {
            "ACTION": action,
            "SCRIPTS_DIRECTORY": str(scripts),
            "RESOURCE_INPUTS_FILE": "inputs.json",
            **contract.FILES,
        }
        log.step(f"ACTION={action} iac-runner container ({example.path})")
        code = subprocess.run(
            [sys.executable, "-m", "iac_runner", "container"], env={**env, **job}, check=False
        ).returncode
        if code != 0:
            error_file = scripts / contract.FILES["ERROR_FILE"]
            error = error_file.read_text() if error_file.exists() else "(no error file)"
            log.error(f"{example.path}: ACTION={action} failed with exit code {code}: {error.splitlines()[0]}")
            return Outcome(example, "failed", time.monotonic() - started)
        values = json.loads((scripts / contract.FILES["OUTPUTS_FILE"]).read_text())
        secret = json.loads((scripts / contract.FILES["SECRET_OUTPUTS_FILE"]).read_text())
        if action == "create":
            outputs = len(values) + len(secret)
        log.info(f"outputs.json: {json.dumps(values, sort_keys=True)}")
        log.info(f"secret-outputs.json (masked): {json.dumps(dict.fromkeys(secret, MASK), sort_keys=True)}")
    return Outcome(example, "ok", time.monotonic() - started, outputs)


# The GitOps example the demo ends with: a resource definition, run as the Container Driver would run it.
DEFINITION = "examples/gitops/resource-definitions/s3-bucket-cloudformation.yaml"
DEFINITION_URL = "https://github.com/acme/iac-driver-runner.git"


def _emulate_definition(stacks: Path, cloud: Emulator, repo: str, tmp: Path) -> Outcome:
    """`iac-runner driver emulate` of the example definition: create, then destroy."""
    definition = stacks.parent / DEFINITION
    example = Example("s3-bucket (driver emulate)", definition.stem.rsplit("-", 1)[-1], definition)
    secrets = json.loads((stacks / "s3-bucket" / "secret-inputs.json").read_text())
    started = time.monotonic()
    for action in ("create", "destroy"):
        log.step(f"iac-runner driver emulate {DEFINITION} --action {action}")
        argv = [
            sys.executable,
            "-m",
            "iac_runner",
            "driver",
            "emulate",
            str(definition),
            "--action",
            action,
            "--url-map",
            f"{DEFINITION_URL}={repo}",
            "--endpoint",
            cloud.endpoint,
            "--state-url",
            (tmp / "emulate-state").as_uri(),
        ]
        # Secret values through the environment, never a process argument.
        env = {**os.environ, **{f"IAC_RUNNER_SECRET_{k}": str(v) for k, v in secrets.items()}}
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            return Outcome(example, "failed", time.monotonic() - started)
    return Outcome(example, "ok", time.monotonic() - started, outputs=4)


def _repo(stacks: Path, bare: Path) -> str:
    """A local git repository holding the example stacks, served by URL as a definition would point at it."""
    work = bare.with_name("stacks-work")
    shutil.copytree(stacks, work / "stacks", ignore=shutil.ignore_patterns(".terraform", "__pycache__"))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "example stacks"],
        ["clone", "-q", "--bare", ".", str(bare)],
    ):
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    return bare.as_uri()


def _summary(outcomes: list[Outcome]) -> None:
    rows = [("stack", "backend", "result", "outputs", "seconds")]
    rows += [(o.example.family, o.example.backend, o.status, str(o.outputs), f"{o.seconds:.1f}") for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("iac-runner demo: create -> outputs -> destroy on the embedded cloud")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
