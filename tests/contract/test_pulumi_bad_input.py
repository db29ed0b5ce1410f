"""Bad input for the pulumi backend through the container contract, with the real Pulumi CLI and engine: the
contract's exit code, a clear ERROR_FILE, no output files written, no Python traceback, and no secret in any of
it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, Container, Result, run_cli, unique
from tests.helpers.pulumi import (
    PASSPHRASE,
    SMALL_PY,
    checkpoint,
    isolate_pulumi,
    lock_files,
    managed,
    program,
    write_lock,
)

INPUTS = {"name": "bad-input"}
SECRETS = {"token": SENTINEL}

RAISING_PY = """\
import pulumi

config = pulumi.Config()
name = config.require("name")


def check(value):
    if value == "bad-input":
        raise RuntimeError(f"the name {value!r} is reserved")


check(name)
pulumi.export("name", name)
"""
RAISING_LINE = RAISING_PY.splitlines().index('        raise RuntimeError(f"the name {value!r} is reserved")') + 1

FAILING_PROVIDER_PY = """\
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Refusing(ResourceProvider):
    def create(self, props):
        raise ValueError("the widget API refused the request: quota exceeded")


class Widget(Resource):
    def __init__(self, name):
        super().__init__(Refusing(), name, {})


config = pulumi.Config()
config.require_secret("token")
Widget("widget")
"""

# Prints a value given as a secret input in plain text (and base64-encoded, a form the engine does not know).
PRINTING_PY = """\
import base64

import pulumi

config = pulumi.Config()
shown = config.require("shown")
print("the value is", shown)
print("encoded:", base64.b64encode(shown.encode()).decode())
pulumi.export("length", len(shown))
"""


@dataclass
class Case:
    """One bad input: what to change from a good run, and what the error file must say."""

    inputs: Any = field(default_factory=lambda: dict(INPUTS))
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    files: dict[str, str] = field(default_factory=lambda: program(SMALL_PY))
    env: dict[str, str | None] = field(default_factory=dict)
    code: int = 2
    says: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "Pulumi.yaml is not YAML": Case(
        files={**program(SMALL_PY), "Pulumi.yaml": "name: small\nruntime: [python\n"},
        says=("Pulumi.yaml is not valid YAML", "Pulumi.yaml:"),
    ),
    "Pulumi.yaml without a name": Case(
        files={**program(SMALL_PY), "Pulumi.yaml": "runtime: python\n"},
        says=("Pulumi.yaml must be a mapping with at least `name` and `runtime`", "name: my-project"),
    ),
    "unsupported runtime": Case(
        files=program(SMALL_PY, runtime="nodejs"),
        says=("The Pulumi project's runtime is 'nodejs'", "Python programs only", "runtime: python"),
    ),
    "unsupported runtime option": Case(
        files={
            **program(SMALL_PY),
            "Pulumi.yaml": "name: small\nruntime:\n  name: python\n  options:\n    toolchain: poetry\n",
        },
        says=("The runtime option 'toolchain' is not supported", "virtualenv"),
    ),
    "program raises": Case(
        files=program(RAISING_PY),
        code=1,
        says=(
            "The Pulumi program failed: RuntimeError: the name 'bad-input' is reserved",
            f"__main__.py:{RAISING_LINE}",
            "called from __main__.py:12",
        ),
    ),
    "program syntax error": Case(
        files=program("import pulumi\n\nvalue = (1,\npulumi.export('value', 1)\n"),
        says=("The Pulumi program has a syntax error: '(' was never closed", "__main__.py:3"),
    ),
    "no program": Case(
        files={"Pulumi.yaml": "name: small\nruntime: python\n"},
        says=("The Pulumi project has no program: __main__.py is missing",),
    ),
    "runtime is a number": Case(
        files={**program(SMALL_PY), "Pulumi.yaml": "name: small\nruntime: 42\n"},
        says=("`runtime` in Pulumi.yaml must be a name", "runtime: python"),
    ),
    "a null input": Case(inputs={**INPUTS, "size": None}, says=("Input 'size' is null", "Pulumi config has no null")),
    "an input of the wrong type": Case(
        inputs={**INPUTS, "size": "big"}, says=("Input 'size' must be an integer for the program", "get_int")
    ),
    "missing required config": Case(
        inputs={"size": 3},
        says=("The program requires configuration 'small:name'", "Add 'name' to the resource inputs"),
    ),
    "missing required secret config": Case(
        secrets={}, says=("The program requires configuration 'small:token'", "Add 'token'")
    ),
    "missing passphrase with secret inputs": Case(
        env={"PULUMI_CONFIG_PASSPHRASE": None},
        says=("PULUMI_CONFIG_PASSPHRASE is not set, but the stack has secret inputs", "Set PULUMI_CONFIG_PASSPHRASE"),
    ),
    "state bucket missing": Case(
        env={"IAC_RUNNER_STATE_URL": "s3://no-such-bucket/stacks"},
        says=("The state bucket does not exist", "s3://no-such-bucket/stacks", "Create the bucket"),
    ),
    "no state url in container mode": Case(
        env={"IAC_RUNNER_STATE_URL": None}, says=("IAC_RUNNER_STATE_URL is required for the pulumi backend",)
    ),
    "provider plugin not available offline": Case(
        files=program(
            "import pulumi\n\npulumi.CustomResource('widget:index:Widget', 'w', {}, "
            "opts=pulumi.ResourceOptions(version='1.2.3'))\n"
        ),
        says=(
            "A provider plugin the program needs is not available: pulumi-resource-widget v1.2.3",
            "pulumi plugin install resource widget v1.2.3",
        ),
    ),
    "failing dynamic provider": Case(
        files=program(FAILING_PROVIDER_PY),
        code=1,
        says=(
            "Resource widget failed while updating the stack: the widget API refused the request: quota exceeded",
            "resource(s) widget",
        ),
    ),
}


def check_failure(result: Result, code: int, says: tuple[str, ...]) -> str:
    assert result.returncode == code, result.log
    assert "Traceback" not in result.log and "Traceback" not in result.error
    assert not result.files["values"].exists() and not result.files["secrets"].exists(), "nothing half-written"
    error = result.error
    assert error, f"no error file; log:\n{result.log}"
    summary = error.splitlines()[0]
    assert len(summary) < 200, f"the first line is not a one-sentence summary: {summary!r}"
    for phrase in says:
        assert phrase in error, f"{phrase!r} not in the error file:\n{error}"
    assert "Fix:" in error
    assert len(error.encode()) <= 4096
    # Not the Automation API's wrapping nor gRPC's.
    for noise in ("code: 255", "stdout:", "stderr:", "grpc", "Exception calling application"):
        assert noise not in error, f"{noise!r} in the error file:\n{error}"
    return error


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, container: Container, aws: dict[str, str], tmp_path: Path) -> None:
    case = CASES[name]
    isolate_pulumi(container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=unique("bad-input"))
    result = container.run("create", case.inputs, secrets=case.secrets, env=case.env, files=case.files)
    check_failure(result, case.code, case.says)


def test_wrong_passphrase(container: Container, tmp_path: Path) -> None:
    """A stack created with one passphrase and run with another: its secrets cannot be decrypted (exit 2)."""
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("passphrase"))
    files = program(SMALL_PY)
    container.run("create", INPUTS, secrets=SECRETS, files=files).assert_ok()

    wrong = {"PULUMI_CONFIG_PASSPHRASE": "not-the-" + PASSPHRASE}
    for action in ("create", "destroy"):
        result = container.run(action, INPUTS, secrets=SECRETS, files=files, env=wrong)
        error = check_failure(result, 2, ("The stack's secrets cannot be decrypted", "PULUMI_CONFIG_PASSPHRASE"))
        assert PASSPHRASE not in error and PASSPHRASE not in result.log


def test_locked_stack_names_the_lock_and_cancel_lock_releases_it(container: Container, tmp_path: Path) -> None:
    """A lock a dead run left in the state: the run fails naming the lock, its holder and the `--cancel-lock` flag
    and never cancels by itself; `iac-runner apply --cancel-lock` (pulumi cancel) then releases it and converges."""
    name = unique("locked")
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    files = program(SMALL_PY)
    created = container.run("create", INPUTS, secrets=SECRETS, files=files)
    created.assert_ok()
    lock = write_lock(state, "small", name)

    locked = container.run("destroy", INPUTS, secrets=SECRETS, files=files)
    error = check_failure(locked, 1, ("The stack is locked by another update", "--cancel-lock"))
    assert f"{lock.name} held by ghost@dead-runner (pid 999999)" in error, error
    assert "never cancels by itself" in error
    assert lock_files(state, "small", name) == [lock], "the lock is left alone"
    assert managed(checkpoint(state, "small", name)) == ["pulumi-python:dynamic:Resource.this"]

    assert created.out_dir is not None
    env = {**container.env, "IAC_RUNNER_SECRET_token": SENTINEL}
    args = ["--stack-name", name, "--state-url", state.as_uri(), "--var", "name=bad-input"]
    cancelled = run_cli(["apply", str(created.out_dir), "--cancel-lock", *args], env)
    cancelled.assert_ok()
    assert "--cancel-lock: cancelling any update or lock held on stack" in cancelled.log
    assert "no changes" in cancelled.log
    assert lock_files(state, "small", name) == []


def test_secret_printed_by_the_program_is_masked(container: Container, tmp_path: Path) -> None:
    """A program that prints a value given as a secret input: our logs never show it, in any form we know."""
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("printed"))
    result = container.run("create", {}, secrets={"shown": SENTINEL}, files=program(PRINTING_PY, "printing"))
    result.assert_ok()  # Container.run also checks the sentinel is in no log, error or values file
    printed = next(line for line in result.log.splitlines() if "the value is" in line)
    assert printed.rstrip().endswith(("the value is ***", "the value is [secret]")), printed
    assert "encoded: ***" in result.log, "the base64 form, which the engine does not know, masked by the runner"
    assert base64.b64encode(SENTINEL.encode()).decode() not in result.log
    assert result.json("values") == {"length": len(SENTINEL)}


def test_missing_config_is_found_before_the_stack_is_created(container: Container, tmp_path: Path) -> None:
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("no-stack"))
    result = container.run("create", {"size": 3}, secrets=SECRETS, files=program(SMALL_PY))
    assert result.returncode == 2, result.log
    assert not (state / ".pulumi" / "stacks").exists() or not list((state / ".pulumi" / "stacks").rglob("*.json"))
