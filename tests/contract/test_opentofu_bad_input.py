"""Bad input for the opentofu backend through the container contract, with the real tofu: the contract's exit
code, a clear ERROR_FILE, no output files written, no Python traceback, and no secret in any of it."""

from __future__ import annotations

import getpass
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, Container, isolate, s3_client, unique
from tests.helpers.running import start
from tests.helpers.tofu import SLOW_TF, SMALL_TF

INPUTS = {"name": "bad-input"}
SECRETS = {"token": SENTINEL}
# The line of SMALL_TF's last line, for messages that point past it.
END = SMALL_TF.count("\n")

NULL_PROVIDER = 'terraform {\n  required_providers {\n    null = {\n      source = "hashicorp/null"\n    }\n  }\n}\n'
MADE_UP_PROVIDER = (
    'terraform {\n  required_providers {\n    widget = {\n      source = "example.invalid/acme/widget"\n    }\n  }\n}\n'
)
# A provisioner that prints a value given as a secret input, then fails: tofu does not hide it (the variable is
# not marked sensitive), so the runner's redaction must.
LEAKY_TF = """\
variable "shown" {
  type = string
}

resource "terraform_data" "leaky" {
  provisioner "local-exec" {
    command = "echo the value is ${var.shown}; exit 7"
  }
}
"""


@dataclass
class Case:
    """One bad input: what to change from a good run, and what the error file must say."""

    inputs: Any = field(default_factory=lambda: dict(INPUTS))
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    files: dict[str, str] = field(default_factory=lambda: {"main.tf": SMALL_TF})
    env: dict[str, str | None] = field(default_factory=dict)
    code: int = 2
    says: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "hcl syntax error": Case(
        files={"main.tf": SMALL_TF + '\nresource "terraform_data" "broken" {\n  input =\n}\n'},
        says=("Invalid expression", f"main.tf:{END + 3}"),
    ),
    "undeclared input": Case(
        inputs={**INPUTS, "nmae": "x"},
        says=("Input 'nmae' is not a declared variable", "name, size (optional), tags (optional), token"),
    ),
    "undeclared secret input": Case(
        secrets={**SECRETS, "tokn": SENTINEL},
        says=("Input 'tokn' is not a declared variable", "declared variables: name,"),
    ),
    "missing required variable": Case(inputs={}, says=("Required variable 'name' has no value", "size (optional)")),
    "wrong type": Case(
        inputs={**INPUTS, "size": "big"}, says=("Input 'size' has the wrong type", "a number is required")
    ),
    "list for a map": Case(inputs={**INPUTS, "tags": ["a"]}, says=("Input 'tags' has the wrong type", "map of string")),
    "failing validation block": Case(
        inputs={**INPUTS, "size": 500}, says=("Input 'size'", "validation rule", "size must be between 1 and 100")
    ),
    "provider not available offline": Case(
        files={"main.tf": SMALL_TF + NULL_PROVIDER},
        says=("A provider the stack needs is not available", "hashicorp/null", "mirror"),
    ),
    "made-up provider": Case(
        files={"main.tf": SMALL_TF + MADE_UP_PROVIDER},
        says=("A provider the stack needs is not available", "example.invalid/acme/widget"),
    ),
    "reference to an undeclared resource": Case(
        files={"main.tf": SMALL_TF + '\noutput "oops" {\n  value = terraform_data.nope.id\n}\n'},
        says=("configuration is invalid: Reference to undeclared resource", f"main.tf:{END + 3}", "terraform_data"),
    ),
    "module folder missing": Case(
        files={"main.tf": SMALL_TF + '\nmodule "network" {\n  source = "./modules/network"\n}\n'},
        says=("tofu init failed: Unreadable module directory", "network"),
    ),
    "state bucket missing": Case(
        env={"IAC_RUNNER_STATE_URL": "s3://no-such-bucket/stacks"},
        says=("The state bucket does not exist", "s3://no-such-bucket/stacks", "Create the bucket"),
    ),
    "no state url in container mode": Case(
        env={"IAC_RUNNER_STATE_URL": None}, says=("IAC_RUNNER_STATE_URL is required", "s3://bucket/prefix")
    ),
    "engine binary missing": Case(
        env={"IAC_RUNNER_TOFU_BINARY": "no-such-tofu"},
        says=("The OpenTofu engine is not available", "'no-such-tofu' is not on PATH", "make tools"),
    ),
    "state URL under /proc": Case(
        env={"IAC_RUNNER_STATE_URL": "file:///proc/iac-runner-state"},
        says=("cannot be used", "IAC_RUNNER_STATE_URL=file:///proc/iac-runner-state"),
    ),
    "state URL is a file": Case(
        env={"IAC_RUNNER_STATE_URL": "file:///etc/hostname"}, says=("cannot be used", "file:///etc/hostname")
    ),
    "main.tf is a folder": Case(
        files={"stack.tf": SMALL_TF, "main.tf/README": "not a configuration file\n"},
        says=("main.tf in the stack folder is not a regular file", "Rename the folder"),
    ),
    "engine binary is not executable": Case(
        # Not a program either way: without the execute bit, or (where it has one) not an executable format.
        env={"IAC_RUNNER_TOFU_BINARY": "/etc/hostname"},
        says=("/etc/hostname", "iac-runner backends"),
    ),
    "two backend declarations": Case(
        files={
            "main.tf": SMALL_TF,
            "backend.tf": 'terraform {\n  backend "local" {}\n}\n',
            "other.tf.json": '{"terraform": {"backend": {"local": {}}}}',
        },
        says=("declares its state backend twice", "backend.tf", "other.tf.json"),
    ),
    "secret printed by a failing local-exec": Case(
        inputs={},
        secrets={"shown": SENTINEL},
        files={"main.tf": LEAKY_TF},
        code=1,
        says=("tofu apply failed", "local-exec", "terraform_data.leaky"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, container: Container, aws: dict[str, str], tmp_path: Path) -> None:
    case = CASES[name]
    isolate(container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=unique("bad-input"))
    result = container.run("create", case.inputs, secrets=case.secrets, env=case.env, files=case.files)
    assert result.returncode == case.code, result.log
    assert "Traceback" not in result.log and "Internal error" not in result.log
    assert not result.files["values"].exists() and not result.files["secrets"].exists(), "nothing half-written"
    error = result.error
    assert error, f"no error file; log:\n{result.log}"
    summary = error.splitlines()[0]
    assert len(summary) < 200, f"the first line is not a one-sentence summary: {summary!r}"
    for phrase in case.says:
        assert phrase in error, f"{phrase!r} not in the error file:\n{error}"
    assert "Fix:" in error
    assert len(error.encode()) <= 4096


def test_secret_printed_by_local_exec_is_masked(container: Container, tmp_path: Path) -> None:
    """tofu prints what a provisioner prints; a secret input given to a non-sensitive variable shows up there,
    and the runner's logs must show the mask instead."""
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("printed"))
    printing = LEAKY_TF.replace("; exit 7", "")
    result = container.run("create", {}, secrets={"shown": SENTINEL}, files={"main.tf": printing})
    result.assert_ok()  # Container.run also checks the sentinel is in no log, error or values file
    assert "the value is ***" in result.log


def test_lock_held_by_another_run(container: Container, aws: dict[str, str], tmp_path: Path) -> None:
    """A second create while the first holds the S3 state lock: it waits IAC_RUNNER_LOCK_TIMEOUT, then names the
    holder, since when and how to force-unlock; it never force-unlocks."""
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="tofu-state")
    name = unique("locked")
    isolate(container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_STATE_URL="s3://tofu-state/locks")
    files = {"main.tf": SLOW_TF}
    first = start(container, "create", {"seconds": 30}, files=files)
    try:
        first.wait_for("terraform_data.slow: in progress")
        lock_key = f"locks/{name}/terraform.tfstate.tflock"
        lock = json.loads(s3.get_object(Bucket="tofu-state", Key=lock_key)["Body"].read())

        second = container.run("create", {"seconds": 30}, env={"IAC_RUNNER_LOCK_TIMEOUT": "1"}, files=files)
        assert second.returncode == 1, second.log
        assert "Traceback" not in second.log
        assert not second.files["values"].exists() and not second.files["secrets"].exists()
        error = second.error
        assert error.startswith("The stack's state is locked by another run"), error
        assert f"{getpass.getuser()}@" in error, "names who holds it"
        assert f"since {lock['Created'][:10]}" in error, "says since when"
        assert lock["ID"] in error and "force-unlock" in error and "never force-unlocks" in error
        # The holder's lock is untouched.
        assert json.loads(s3.get_object(Bucket="tofu-state", Key=lock_key)["Body"].read())["ID"] == lock["ID"]
    finally:
        first.proc.send_signal(signal.SIGTERM)
        done = first.result()
    assert done.returncode == 130, done.log


def test_an_engine_binary_that_is_not_a_program(container: Container, tmp_path: Path) -> None:
    """An executable file that is no program (exec format error): bad configuration, named, exit 2."""
    fake = tmp_path / "tofu"
    fake.write_text("this is not a program\n")
    fake.chmod(0o755)
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("not-a-program"))
    result = container.run("create", INPUTS, secrets=SECRETS, files={"main.tf": SMALL_TF},
                           env={"IAC_RUNNER_TOFU_BINARY": str(fake)})  # fmt: skip
    assert result.returncode == 2, result.log
    assert f"The tofu executable '{fake}' is not a program this machine can run" in result.error
