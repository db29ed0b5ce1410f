"""The built image, driven exactly as the Container Driver drives it (see conftest.py): each backend's lifecycle
against the suite's moto, an interrupted apply, and the `definition` commands inside the image.
"""

from __future__ import annotations

import json
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, SENTINEL, STACKS, base_env, run_cli
from tests.image.conftest import DockerJob, Job

PASSPHRASE = "image-tier-passphrase-not-secret"
STATE_BUCKET = "iac-runner-image-state"
S3_INPUTS = {"bucket": "image-bucket", "environment": "development", "versioning": True}
S3_VALUES = {"bucket": "image-bucket", "arn": "arn:aws:s3:::image-bucket", "region": "us-east-1"}
S3_SECRETS = {"tokenParameter": "/iac-runner/image-bucket/api-token"}
PASSWORD_INPUTS = {"name": "orders-db", "length": 32, "labels": {"team": "payments", "tier": "1"}}


@pytest.fixture
def jobs(docker: str, image: str, tmp_path: Path, aws: dict[str, str]) -> DockerJob:
    """Jobs of the image against a fresh moto, with an S3 bucket for the engines' state."""
    s3 = boto3.client(
        "s3",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        region_name=aws["AWS_REGION"],
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=STATE_BUCKET)
    return DockerJob(docker, image, tmp_path, {**aws, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})


@dataclass(frozen=True)
class Case:
    """One backend's stack, what it is given and what it gives back."""

    stack: Path
    inputs: dict[str, Any]
    secrets: dict[str, str]
    values: dict[str, Any]
    secret_values: dict[str, str] | None  # None: a generated password, checked by its length
    no_changes: str


CASES = {
    "cloudformation": Case(
        STACKS / "s3-bucket" / "cloudformation",
        S3_INPUTS,
        {"apiToken": SENTINEL},
        S3_VALUES,
        S3_SECRETS,
        "up to date: no changes",
    ),
    "opentofu-s3-state": Case(
        STACKS / "random-password" / "opentofu",
        PASSWORD_INPUTS,
        {"salt": SENTINEL},
        PASSWORD_INPUTS,
        None,
        "no changes: the infrastructure matches the configuration",
    ),
    "pulumi-s3-state": Case(
        STACKS / "s3-bucket" / "pulumi",
        S3_INPUTS,
        {"apiToken": SENTINEL},
        S3_VALUES,
        S3_SECRETS,
        "no changes: the infrastructure matches the program",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lifecycle_as_the_driver_runs_it(jobs: DockerJob, case: str) -> None:
    """create, create again (no change), destroy, destroy again: each a new container with a fresh HOME, state
    in moto's S3 for the stateful engines."""
    c = CASES[case]
    name = f"image-{case}-{uuid.uuid4().hex[:6]}"
    jobs.env.update({"IAC_RUNNER_STACK_NAME": name, "IAC_RUNNER_STATE_URL": f"s3://{STATE_BUCKET}/{name}"})

    def run(action: str) -> Job:
        job = jobs.run(action, c.stack, inputs=c.inputs, secrets=c.secrets)
        job.result.assert_ok()
        assert not job.result.files["error"].exists(), "a successful run writes no error file"
        mode = job.result.files["secrets"].stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, f"secret outputs file mode {oct(mode)}"
        return job

    created = run("create")
    assert created.result.json("values") == c.values
    secret_out = created.result.json("secrets")
    if c.secret_values is None:
        assert set(secret_out) == {"password"} and len(secret_out["password"]) == c.inputs["length"]
    else:
        assert secret_out == c.secret_values

    again = run("create")
    assert c.no_changes in again.result.log, again.result.log
    assert again.result.json("values") == c.values
    assert again.result.json("secrets") == secret_out, "an unchanged stack keeps its secret outputs"

    for _ in range(2):
        destroyed = run("destroy")
        assert destroyed.result.json("values") == {} and destroyed.result.json("secrets") == {}


SLOW_STACK = """
variable "delay" {
  type = number
}

resource "terraform_data" "slow" {
  input = var.delay
  provisioner "local-exec" {
    command = "sleep ${var.delay}"
  }
}

output "delay" {
  value = terraform_data.slow.output
}
"""


def test_sigterm_mid_apply_stops_cleanly_and_a_rerun_converges(jobs: DockerJob) -> None:
    """Kubernetes stopping the pod (SIGTERM, then SIGKILL after the grace period): the runner hands the signal
    to tofu, which stops and saves its state; exit 130 with the reason in ERROR_FILE. The next job converges."""
    name = f"image-sigterm-{uuid.uuid4().hex[:6]}"
    jobs.env.update({"IAC_RUNNER_STACK_NAME": name, "IAC_RUNNER_STATE_URL": f"s3://{STATE_BUCKET}/{name}"})
    files = {"main.tf": SLOW_STACK}
    stopped = jobs.interrupted(
        "create", None, when="terraform_data.slow: in progress (create)", inputs={"delay": 20}, files=files
    )
    assert stopped.result.returncode == 130, f"exit {stopped.result.returncode}\n{stopped.result.log}"
    error = stopped.result.error
    assert error.startswith("The run was interrupted by SIGTERM."), error
    assert "Traceback" not in error
    assert not stopped.result.files["values"].exists(), "an interrupted run writes no outputs"

    rerun = jobs.run("create", None, inputs={"delay": 20}, files=files)
    rerun.result.assert_ok()
    assert rerun.result.json("values") == {"delay": 20}
    jobs.run("destroy", None, inputs={"delay": 20}, files=files).result.assert_ok()


def test_definition_render_and_validate_inside_the_image(jobs: DockerJob, tmp_path: Path) -> None:
    """The templates ship inside the image (package data): a definition rendered there validates offline."""
    rendered = jobs.cli(
        "definition", "render", "--backend", "opentofu", "--source-url", "https://git.example.com/stacks.git",
        "--path", "stacks/random-password/opentofu", "--resource-type", "password", "--id", "password-tofu",
        "--image", jobs.image, "--secret-input", "salt",
    )  # fmt: skip
    rendered.assert_ok()
    assert "driver_type: humanitec/container" in rendered.stdout and jobs.image in rendered.stdout
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "password-tofu.yaml").write_text(rendered.stdout)
    folder.chmod(0o755)

    for checked in (folder, ROOT / "examples" / "gitops" / "resource-definitions"):
        validated = jobs.cli("definition", "validate", "--offline", "/definitions", mounts={checked: "/definitions"})
        validated.assert_ok()
        assert "no problems" in validated.log, validated.log


def test_driver_emulate_runs_an_example_definition_in_the_image(
    jobs: DockerJob, tmp_path: Path, stacks_repo: Path, aws: dict[str, str]
) -> None:
    """`iac-runner driver emulate --docker`: an examples/gitops definition, its git source mapped to a local
    repository, run by the emulated driver in the built image against moto."""
    source = ROOT / "examples" / "gitops" / "resource-definitions" / "s3-bucket-cloudformation.yaml"
    text = source.read_text()
    image_line = next(line for line in text.splitlines() if line.strip().startswith("image:"))
    definition = tmp_path / source.name
    definition.write_text(text.replace(image_line, image_line.split("image:")[0] + f"image: {jobs.image}"))
    url = next(line.split("url:")[1].strip() for line in text.splitlines() if line.strip().startswith("url:"))
    out = tmp_path / "out"
    out.mkdir()
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(S3_INPUTS))
    env = base_env({"PATH": f"{Path(jobs.docker).parent}:{base_env()['PATH']}", "IAC_RUNNER_SECRET_apiToken": SENTINEL})
    argv = [
        "driver", "emulate", str(definition), "--docker", "--endpoint", aws["AWS_ENDPOINT_URL"],
        "--url-map", f"{url}={stacks_repo.as_uri()}", "--inputs", str(inputs), "--out-dir", str(out),
    ]  # fmt: skip
    for action, values, secrets in (("create", S3_VALUES, S3_SECRETS), ("destroy", {}, {})):
        result = run_cli([*argv, "--action", action], env)
        result.assert_ok()
        assert "docker run --rm --user 1000:1000" in result.log, "the job ran in the image"
        assert json.loads((out / "outputs.json").read_text()) == values
        assert json.loads((out / "secret-outputs.json").read_text()) == secrets
