"""The built image, driven exactly as the Container Driver drives it (see conftest.py): each backend's lifecycle
against the suite's moto, an interrupted apply, and the `definition` commands inside the image.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ROOT,
    SENTINEL,
    STACKS,
    Result,
    base_env,
    run_cli,
    s3_client,
    s3_example,
    ssm_client,
    unique,
)
from tests.helpers.pulumi import PASSPHRASE
from tests.image.conftest import DockerJob

STATE_BUCKET = "iac-runner-image-state"
PASSWORD_INPUTS = {"name": "orders-db", "length": 32, "labels": {"team": "payments", "tier": "1"}}
NO_CHANGES = {
    "cloudformation": "up to date: no changes",
    "opentofu": "no changes: the infrastructure matches the configuration",
    "pulumi": "no changes: the infrastructure matches the program",
}


@pytest.fixture
def jobs(docker: str, image: str, tmp_path: Path, aws: dict[str, str]) -> DockerJob:
    """Jobs of the image against a fresh moto, with an S3 bucket for the engines' state."""
    s3_client(aws).create_bucket(Bucket=STATE_BUCKET)
    return DockerJob(docker, image, tmp_path, {**aws, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})


STEPS = ("create", "create again", "destroy", "destroy again")


def lifecycle(
    jobs: DockerJob,
    backend: str,
    stack: Path,
    *,
    inputs: dict[str, Any],
    secrets: dict[str, str],
    check: Callable[[str, Result], None],
) -> None:
    """create, create again (no change), destroy, destroy again: each a new container with a fresh HOME, the
    state in moto's S3 for the stateful engines. `check(step, result)` looks at what each step left."""
    name = unique(f"image-{backend}")
    jobs.env.update({"IAC_RUNNER_STACK_NAME": name, "IAC_RUNNER_STATE_URL": f"s3://{STATE_BUCKET}/{name}"})
    results: dict[str, Result] = {}
    for step in STEPS:
        result = jobs.run(step.split()[0], stack, inputs=inputs, secrets=secrets).result
        result.assert_ok()
        assert not result.files["error"].exists(), f"{step}: a successful run writes no error file"
        mode = stat.S_IMODE(result.files["secrets"].stat().st_mode)
        assert mode == 0o600, f"{step}: secret outputs file mode {oct(mode)}"
        check(step, result)
        results[step] = result
    again = results["create again"]
    assert NO_CHANGES[backend] in again.log, again.log
    assert again.json("values") == results["create"].json("values")
    assert again.json("secrets") == results["create"].json("secrets"), "an unchanged stack keeps its secret outputs"
    for step in ("destroy", "destroy again"):
        assert results[step].json("values") == {} and results[step].json("secrets") == {}
    assert "nothing to destroy" in results["destroy again"].log, results["destroy again"].log


@pytest.mark.parametrize("backend", ["cloudformation", "pulumi"])
def test_s3_bucket_lifecycle(jobs: DockerJob, aws: dict[str, str], backend: str) -> None:
    """The s3-bucket example (pulumi: dynamic providers calling boto3; state in moto's S3): what it leaves in
    moto and in the driver's files is tests/helpers/s3_example.py's."""
    s3, ssm = s3_client(aws), ssm_client(aws)

    def check(step: str, result: Result) -> None:
        if step == "create":
            s3_example.assert_created(result, s3, ssm, "String" if backend == "cloudformation" else "SecureString")
        elif step == "destroy":
            s3_example.assert_destroyed(result, s3, ssm)

    secrets = {"apiToken": SENTINEL}
    lifecycle(jobs, backend, STACKS / "s3-bucket" / backend, inputs=s3_example.INPUTS, secrets=secrets, check=check)


def test_opentofu_lifecycle_with_s3_state(jobs: DockerJob, aws: dict[str, str]) -> None:
    """random-password (the hashicorp/random provider from the image's offline mirror), state in moto's S3."""
    s3 = s3_client(aws)

    def check(step: str, result: Result) -> None:
        if step == "create":
            assert result.json("values") == PASSWORD_INPUTS
            assert len(result.json("secrets")["password"]) == PASSWORD_INPUTS["length"]
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=STATE_BUCKET).get("Contents", [])]
            assert any(k.endswith("terraform.tfstate") for k in keys), f"no state in s3://{STATE_BUCKET}: {keys}"

    stack = STACKS / "random-password" / "opentofu"
    lifecycle(jobs, "opentofu", stack, inputs=PASSWORD_INPUTS, secrets={"salt": SENTINEL}, check=check)


# Stacks the project has never seen, written into SCRIPTS_DIRECTORY by the driver's `files`, one per engine.
UNSEEN_STACKS = {
    "cloudformation": {
        "template.json": json.dumps(
            {
                "Parameters": {"name": {"Type": "String"}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "name"}}}},
                "Outputs": {"queue": {"Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}},
            }
        )
    },
    "opentofu": {
        "queue.tf.json": json.dumps(
            {
                "variable": {"name": {"type": "string"}},
                "resource": {"terraform_data": {"queue": {"input": "${var.name}"}}},
                "output": {"queue": {"value": "${terraform_data.queue.output}"}},
            }
        )
    },
    "pulumi": {
        "Pulumi.yaml": "name: unseen\nruntime: python\n",
        "__main__.py": "import pulumi\n\npulumi.export('queue', pulumi.Config().require('name'))\n",
    },
}


@pytest.mark.parametrize("backend", list(UNSEEN_STACKS))
def test_a_stack_the_project_has_never_seen(jobs: DockerJob, backend: str) -> None:
    name = unique(f"image-unseen-{backend}")
    jobs.env.update({"IAC_RUNNER_STACK_NAME": name, "IAC_RUNNER_STATE_URL": f"s3://{STATE_BUCKET}/{name}"})
    files, inputs = UNSEEN_STACKS[backend], {"name": name}
    for action in ("create", "create", "destroy", "destroy"):
        result = jobs.run(action, None, inputs=inputs, files=files).result
        result.assert_ok()
        assert result.json("values") == ({"queue": name} if action == "create" else {})


# Stacks whose apply takes `delay` seconds: time for a SIGTERM to arrive mid-apply.
SLOW_STACKS = {
    "opentofu": {
        "main.tf": """
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
    },
    "pulumi": {
        "Pulumi.yaml": "name: slow\nruntime: python\n",
        "__main__.py": """
import time

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class SlowProvider(ResourceProvider):
    def create(self, props):
        time.sleep(props["delay"])
        return CreateResult(id_="slow", outs=props)


class Slow(Resource):
    delay: pulumi.Output[int]

    def __init__(self, name, delay):
        super().__init__(SlowProvider(), name, {"delay": delay})


pulumi.export("delay", Slow("slow", pulumi.Config().require_int("delay")).delay)
""",
    },
}
IN_PROGRESS = {"opentofu": "terraform_data.slow: in progress (create)", "pulumi": "slow: in progress (add)"}


@pytest.mark.parametrize("backend", list(SLOW_STACKS))
def test_sigterm_mid_apply_stops_cleanly_and_a_rerun_converges(jobs: DockerJob, backend: str) -> None:
    """Kubernetes stopping the pod (SIGTERM, then SIGKILL after the grace period): the runner hands the signal
    to the engine, which stops and saves its state; exit 130 with the reason in ERROR_FILE. The next job
    converges."""
    name = unique(f"image-sigterm-{backend}")
    jobs.env.update({"IAC_RUNNER_STACK_NAME": name, "IAC_RUNNER_STATE_URL": f"s3://{STATE_BUCKET}/{name}"})
    files, inputs = SLOW_STACKS[backend], {"delay": 20}
    stopped = jobs.interrupted("create", None, when=IN_PROGRESS[backend], inputs=inputs, files=files)
    assert stopped.result.returncode == 130, f"exit {stopped.result.returncode}\n{stopped.result.log}"
    error = stopped.result.error
    assert error.startswith("The run was interrupted by SIGTERM."), error
    assert not stopped.result.files["values"].exists(), "an interrupted run writes no outputs"

    rerun = jobs.run("create", None, inputs=inputs, files=files)
    rerun.result.assert_ok()
    assert rerun.result.json("values") == {"delay": 20}
    jobs.run("destroy", None, inputs=inputs, files=files).result.assert_ok()


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
    inputs.write_text(json.dumps(s3_example.INPUTS))
    env = base_env({"PATH": f"{Path(jobs.docker).parent}:{base_env()['PATH']}", "IAC_RUNNER_SECRET_apiToken": SENTINEL})
    argv = [
        "driver", "emulate", str(definition), "--docker", "--endpoint", aws["AWS_ENDPOINT_URL"],
        "--url-map", f"{url}={stacks_repo.as_uri()}", "--inputs", str(inputs), "--out-dir", str(out),
    ]  # fmt: skip
    created = {"bucket": s3_example.BUCKET, "arn": f"arn:aws:s3:::{s3_example.BUCKET}", "region": "us-east-1"}
    for action, values, secrets in (("create", created, {"tokenParameter": s3_example.PARAMETER}), ("destroy", {}, {})):
        result = run_cli([*argv, "--action", action], env)
        result.assert_ok()
        assert "docker run --rm --user 1000:1000" in result.log, "the job ran in the image"
        assert json.loads((out / "outputs.json").read_text()) == values
        assert json.loads((out / "secret-outputs.json").read_text()) == secrets


def test_the_build_cas_stay_out_of_the_image(docker: str, image: str, tmp_path: Path) -> None:
    """The host's extra CAs reach the downloading build steps as a BuildKit secret: no file, layer or ENV of the
    image holds one (a line from the middle of each certificate's body is looked for everywhere). The CAs are
    the ones image/host-cas.sh hands the build."""
    pem = tmp_path / "build-cas.pem"
    collected = subprocess.run(
        [str(ROOT / "image" / "host-cas.sh"), str(pem)], capture_output=True, text=True, check=False
    )
    assert collected.returncode == 0, collected.stderr
    bodies = [block.split("-----")[0] for block in pem.read_text().split("-----BEGIN CERTIFICATE-----")[1:]]
    if not bodies:
        pytest.skip(f"the build had no extra CA to keep out ({collected.stderr.strip()})")
    needles = [lines[len(lines) // 2] for lines in (body.split() for body in bodies)]
    patterns = [arg for needle in needles for arg in ("-e", needle)]
    found = subprocess.run(
        [docker, "run", "--rm", "--user", "0", "--entrypoint", "grep", image, "-rlF", *patterns,
         "/etc", "/usr", "/opt", "/home", "/root", "/var"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert found.returncode == 1, f"grep exited {found.returncode}: {found.stdout}{found.stderr}"
    config = subprocess.run(
        [docker, "image", "inspect", image], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    history = subprocess.run(
        [docker, "history", "--no-trunc", image], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert not [n for n in needles if n in config or n in history], "a CA certificate is in the image's config"
