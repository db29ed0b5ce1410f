"""The orchestrator's layouts through the container contract: wherever the stack comes from (the driver's checkout
of the whole repository or of the stack's folder, the runner's own checkout, or `files` alone), the companion
files the driver's `files` write at SCRIPTS_DIRECTORY's root join the stack: its tfvars give the inputs and its own
backend block (HCL or JSON) holds the state, at its key in (moto's) S3. create, create, destroy, destroy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, Container, make_repo, s3_client, unique

STACK_TF = """\
variable "name" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

resource "terraform_data" "this" {
  input = var.name
}

output "name" {
  value = terraform_data.this.output
}

output "token" {
  value     = var.token
  sensitive = true
}
"""

# The same stack in JSON syntax only: variables (one sensitive), a resource, outputs (one sensitive).
STACK_TF_JSON = json.dumps(
    {
        "variable": {"name": {"type": "string"}, "token": {"type": "string", "sensitive": True}},
        "resource": {"terraform_data": {"this": {"input": "${var.name}"}}},
        "output": {
            "name": {"value": "${terraform_data.this.output}"},
            "token": {"value": "${var.token}", "sensitive": True},
        },
    },
    indent=2,
)

STACK = "stacks/app/opentofu"


def backend_file(kind: str, key: str) -> dict[str, str]:
    settings = {"bucket": "layout-state", "key": key, "region": "us-east-1"}
    if kind == "backend.tf":
        body = "".join(f'    {k} = "{v}"\n' for k, v in settings.items())
        return {kind: f'terraform {{\n  backend "s3" {{\n{body}  }}\n}}\n'}
    return {kind: json.dumps({"terraform": {"backend": {"s3": settings}}})}


def layout(name: str, repo: Path, stack_files: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The job's environment and what the driver puts in SCRIPTS_DIRECTORY (besides the companions)."""
    in_repo = {f"{STACK}/{file}": text for file, text in stack_files.items()}
    if name == "driver checkout":  # the whole repository; the runner takes the stack's subfolder
        return {"IAC_RUNNER_SOURCE_PATH": STACK}, in_repo
    if name == "driver checkout with a path":  # the driver checked out only the stack's folder
        return {}, dict(stack_files)
    if name == "runner checkout":
        return {"IAC_RUNNER_SOURCE_URL": repo.as_uri(), "IAC_RUNNER_SOURCE_PATH": STACK}, {}
    return {"IAC_RUNNER_SOURCE_PATH": "stack"}, {f"stack/{file}": text for file, text in stack_files.items()}


@pytest.mark.parametrize("backend", ["backend.tf", "backend.tf.json"])
@pytest.mark.parametrize("name", ["driver checkout", "driver checkout with a path", "runner checkout", "no checkout"])
@pytest.mark.parametrize("syntax", ["hcl", "json"])
def test_companion_files_give_inputs_and_state_in_every_layout(
    syntax: str, name: str, backend: str, *, container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    stack_files = {"main.tf": STACK_TF} if syntax == "hcl" else {"main.tf.json": STACK_TF_JSON}
    repo = make_repo(tmp_path / "repo.git", {f"{STACK}/{f}": t for f, t in stack_files.items()}, copy_stacks=False)
    env, placed = layout(name, repo, stack_files)
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="layout-state")
    key = f"{unique('res')}/terraform.tfstate"
    files = {**placed, "terraform.tfvars.json": json.dumps({"name": "from-tfvars"}), **backend_file(backend, key)}
    # No IAC_RUNNER_STATE_URL, no IAC_RUNNER_STACK_NAME: the stack's own backend block is its state's identity.
    container.env.update({**aws, "TMPDIR": str(tmp_path), **env})
    secrets = {"token": SENTINEL}

    def state() -> dict[str, Any]:
        data: dict[str, Any] = json.loads(s3.get_object(Bucket="layout-state", Key=key)["Body"].read())
        return data

    created = container.run("create", None, secrets=secrets, files=files)
    created.assert_ok()
    assert created.json("values") == {"name": "from-tfvars"} and created.json("secrets") == {"token": SENTINEL}
    assert f"state: the stack's own backend block in {backend}" in created.log
    if name != "driver checkout with a path":  # there the stack's folder is SCRIPTS_DIRECTORY itself
        for companion in (backend, "terraform.tfvars.json"):
            assert f"using {companion} from SCRIPTS_DIRECTORY beside the stack" in created.log, created.log
    assert [r["type"] for r in state()["resources"]] == ["terraform_data"]

    again = container.run("create", None, secrets=secrets, files=files)
    again.assert_ok()
    assert "no changes" in again.log and again.json("values") == {"name": "from-tfvars"}

    for _ in range(2):
        gone = container.run("destroy", None, secrets=secrets, files=files)
        gone.assert_ok()
        assert gone.json("values") == {} and gone.json("secrets") == {}
        assert state()["resources"] == []


def test_a_second_backend_declaration_from_the_companions_is_an_error(
    container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    """A stack that declares its backend, plus a backend.tf the driver writes: never a silent choice."""
    own = STACK_TF + '\nterraform {\n  backend "local" {}\n}\n'
    repo = make_repo(tmp_path / "repo.git", {f"{STACK}/main.tf": own}, copy_stacks=False)
    container.env.update({**aws, "TMPDIR": str(tmp_path), "IAC_RUNNER_SOURCE_URL": repo.as_uri(),
                          "IAC_RUNNER_SOURCE_PATH": STACK, "IAC_RUNNER_STACK_NAME": unique("twice")})  # fmt: skip
    result = container.run("create", {"name": "x"}, secrets={"token": SENTINEL}, files=backend_file("backend.tf", "k"))
    assert result.returncode == 2, result.log
    assert "declares its state backend twice" in result.error and "backend.tf" in result.error
