"""The container contract for pulumi, run as the Container Driver runs it, with the real Pulumi CLI, Python
language host and engine (dynamic providers; moto for AWS and S3 state)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from tests.helpers import SENTINEL, STACKS, Container, s3_client, unique
from tests.helpers.pulumi import (
    RP_INPUTS,
    SMALL_PY,
    checkpoint,
    isolate_pulumi,
    lock_files,
    managed,
    program,
)

# -- the lifecycle --------------------------------------------------------------------------------------------


def test_create_noop_update_destroy_twice_with_file_state(
    container: Container, stacks_repo: Path, tmp_path: Path
) -> None:
    """random-password from the stacks repo (file:// git URL), state in file://: the driver's whole lifecycle."""
    name = unique("rp")
    state = isolate_pulumi(
        container,
        tmp_path,
        IAC_RUNNER_SOURCE_URL=stacks_repo.as_uri(),
        IAC_RUNNER_SOURCE_PATH="stacks/random-password/pulumi",
        IAC_RUNNER_STACK_NAME=name,
    )
    secrets = {"salt": SENTINEL}

    never_created = container.run("destroy", RP_INPUTS, secrets=secrets)
    never_created.assert_ok()
    assert never_created.json("values") == {} and never_created.json("secrets") == {}
    assert "nothing to destroy" in never_created.log

    created = container.run("create", RP_INPUTS, secrets=secrets)
    created.assert_ok()
    values, secret_values = created.json("values"), created.json("secrets")
    # Split by the engine's secret flag, JSON types kept: string, number, map; exactly the opentofu twin's.
    assert values == RP_INPUTS
    assert isinstance(values["length"], int)
    assert set(secret_values) == {"password"}
    assert isinstance(secret_values["password"], str) and len(secret_values["password"]) == 32
    assert secret_values["password"] not in created.log
    assert stat.S_IMODE(created.files["secrets"].stat().st_mode) == 0o600
    assert not created.files["error"].exists()
    assert "resolved to commit" in created.log
    assert "this: done (add)" in created.log and "record: done (add)" in created.log
    deployment = checkpoint(state, "random-password", name)
    assert managed(deployment) == ["pulumi-python:dynamic:Resource.record", "pulumi-python:dynamic:Resource.this"]
    assert SENTINEL not in json.dumps(deployment) and secret_values["password"] not in json.dumps(deployment)
    assert deployment["secrets_providers"]["type"] == "passphrase"

    unchanged = container.run("create", RP_INPUTS, secrets=secrets)
    unchanged.assert_ok()
    assert "no changes" in unchanged.log
    assert unchanged.json("values") == values and unchanged.json("secrets") == secret_values

    labels = {"team": "payments", "tier": "2"}
    updated = container.run("create", {**RP_INPUTS, "labels": labels}, secrets=secrets)
    updated.assert_ok()
    assert "record: done (change)" in updated.log and "changes: {'update': 1}" in updated.log
    assert updated.json("values")["labels"] == labels
    assert updated.json("secrets") == secret_values, "the password's keepers did not change"

    destroyed = container.run("destroy", RP_INPUTS, secrets=secrets)
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    assert managed(checkpoint(state, "random-password", name)) == []

    again = container.run("destroy", RP_INPUTS, secrets=secrets)
    again.assert_ok()
    assert again.json("values") == {} and again.json("secrets") == {}
    assert "nothing to destroy" in again.log
    assert lock_files(state, "random-password", name) == []


def test_typed_and_nested_secret_outputs_with_state_in_moto_s3(
    container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="pulumi-state")
    name = unique("s3state")
    isolate_pulumi(
        container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_STATE_URL="s3://pulumi-state/team/a"
    )
    files = program(SMALL_PY)
    inputs = {"name": "in-s3", "size": 3, "tags": {"team": "payments"}}
    secrets = {"token": SENTINEL}

    never_created = container.run("destroy", inputs, secrets=secrets, files=files)
    never_created.assert_ok()
    assert never_created.json("values") == {} and never_created.json("secrets") == {}

    created = container.run("create", inputs, secrets=secrets, files=files)
    created.assert_ok()
    values = created.json("values")
    assert values == {"name": "in-s3", "size": 3, "tags": {"team": "payments"}}
    assert isinstance(values["size"], int)
    # A value holding a secret anywhere is secret whole; the secrets file holds the real values, not masks.
    assert created.json("secrets") == {
        "token": SENTINEL,
        "connection": {"host": "in-s3.db.internal", "port": 5432, "password": SENTINEL},
    }
    assert "state at s3://pulumi-state/team/a" in created.log
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="pulumi-state").get("Contents", [])]
    stack_key = f"team/a/.pulumi/stacks/small/{name}.json"
    assert stack_key in keys, keys
    assert all(k.startswith("team/a/.pulumi/") for k in keys), "everything under the prefix"
    assert not [k for k in keys if "/locks/" in k], "the lock is released"
    stored = s3.get_object(Bucket="pulumi-state", Key=stack_key)["Body"].read().decode()
    assert SENTINEL not in stored, "secrets are encrypted in the state"
    assert managed(json.loads(stored)["checkpoint"]["latest"]) == ["pulumi-python:dynamic:Resource.this"]

    destroyed = container.run("destroy", inputs, secrets=secrets, files=files)
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    stored = s3.get_object(Bucket="pulumi-state", Key=stack_key)["Body"].read().decode()
    assert managed(json.loads(stored)["checkpoint"]["latest"]) == []


def test_stack_config_file_beside_the_program_is_honoured(container: Container, tmp_path: Path) -> None:
    """A Pulumi.<stack>.yaml the driver's `files` wrote beside the program: its keys count, ours win."""
    name = unique("config")
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    own = "config:\n  small:name: from-file\n  small:size: '5'\n  small:tags:\n    from: file\n"
    files = {**program(SMALL_PY), f"Pulumi.{name}.yaml": own}
    result = container.run("create", {"name": "from-inputs"}, secrets={"token": SENTINEL}, files=files)
    result.assert_ok()
    assert result.json("values") == {"name": "from-inputs", "size": 5, "tags": {"from": "file"}}
    assert result.json("secrets")["token"] == SENTINEL


def test_stack_config_file_joins_a_git_checkout(container: Container, stacks_repo: Path, tmp_path: Path) -> None:
    name = unique("git-config")
    isolate_pulumi(
        container,
        tmp_path,
        IAC_RUNNER_STACK_NAME=name,
        IAC_RUNNER_SOURCE_URL=stacks_repo.as_uri(),
        IAC_RUNNER_SOURCE_PATH="stacks/random-password/pulumi",
    )
    own = "config:\n  random-password:name: from-driver-files\n  random-password:length: '20'\n"
    result = container.run("create", {}, secrets={"salt": SENTINEL}, files={f"Pulumi.{name}.yaml": own})
    result.assert_ok()
    assert result.json("values") == {"name": "from-driver-files", "length": 20, "labels": {}}
    assert len(result.json("secrets")["password"]) == 20
    assert f"using Pulumi.{name}.yaml from SCRIPTS_DIRECTORY" in result.log


# -- a project with its own virtualenv ---------------------------------------------------------------------------

VENV_PY = """\
import sys

import boto3
import pulumi

pulumi.export("python", sys.executable)
pulumi.export("boto3", boto3.__version__)
"""


def test_virtualenv_option_with_requirements(container: Container, tmp_path: Path) -> None:
    """`virtualenv: venv` + requirements.txt: the program runs in a venv made from the requirements (pip, from
    PyPI, once per user and requirements), reused while they stay the same."""
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("venv"))
    files = {
        "Pulumi.yaml": "name: venv-project\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n",
        "requirements.txt": "pulumi==3.79.0\nboto3\n",
        "__main__.py": VENV_PY,
    }
    first = container.run("create", {}, files=files)
    first.assert_ok()
    assert "creating the project's virtualenv" in first.log or "reusing the cached virtualenv" in first.log
    assert first.out_dir is not None
    # The venv is linked in the run's own view of the project (the user's folder is never written).
    assert first.json("values")["python"].endswith("/stack/venv/bin/python")
    assert not (first.out_dir / "venv").exists()

    second = container.run("create", {}, files=files)
    second.assert_ok()
    assert "reusing the cached virtualenv for requirements.txt" in second.log
    assert "creating the project's virtualenv" not in second.log
    assert "no changes" in second.log
    assert second.json("values")["boto3"] == first.json("values")["boto3"]


# -- a program as teams write one today ----------------------------------------------------------------------------

CURRENT_SDK = STACKS / "current-sdk"


def test_current_sdk_program_with_its_own_virtualenv(
    container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    """stacks/current-sdk/pulumi from git: its own requirements.txt (`pulumi>=3.150`, boto3) and `toolchain: pip` +
    `virtualenv: venv`, run whatever the pairing passes to the language host (the 3.79 host beside a newer CLI
    never sees the option): program and dynamic provider run in the venv; structured config, a secret config,
    outputs of each JSON type and a secret nested in a map; create, create, destroy, destroy."""
    s3 = s3_client(aws)
    name = unique("current")
    state = isolate_pulumi(
        container,
        tmp_path,
        **aws,
        IAC_RUNNER_SOURCE_URL=stacks_repo.as_uri(),
        IAC_RUNNER_SOURCE_PATH="stacks/current-sdk/pulumi",
        IAC_RUNNER_STACK_NAME=name,
    )
    inputs = json.loads((CURRENT_SDK / "inputs.json").read_text())
    settings = inputs["settings"]
    secrets = {"token": SENTINEL}

    created = container.run("create", inputs, secrets=secrets)
    created.assert_ok()
    values = created.json("values")
    assert values["arn"] == f"arn:aws:s3:::{settings['bucket']}"
    assert values["replicas"] == [1, 2, 3] and values["tags"] == settings["tags"]
    sdk = tuple(int(part) for part in values["sdk"].split(".")[:2])
    assert sdk >= (3, 150), f"the program ran with its own SDK, not the runner's: {values['sdk']}"
    venv_python = re.compile(r"/venv/bin/python3?$")
    assert venv_python.search(values["python"]) and venv_python.search(values["providerPython"]), values
    assert created.json("secrets") == {
        "token": SENTINEL,
        "connection": {
            "host": f"{settings['bucket']}.s3.internal",
            "auth": {"scheme": "bearer", "credentials": [SENTINEL]},
            "ports": [443],
        },
    }
    tags = s3.get_bucket_tagging(Bucket=settings["bucket"])["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == settings["tags"]
    deployment = checkpoint(state, "current-sdk", name)
    assert managed(deployment) == ["pulumi-python:dynamic:Resource.bucket"]
    assert SENTINEL not in json.dumps(deployment), "secrets are encrypted in the state"

    again = container.run("create", inputs, secrets=secrets)
    again.assert_ok()
    assert "reusing the cached virtualenv for requirements.txt" in again.log
    assert "no changes" in again.log
    # The same outputs; `python` names this run's checkout, a new temp folder every run.
    assert {**again.json("values"), "python": ""} == {**values, "python": ""}
    assert again.json("secrets") == created.json("secrets")

    destroyed = container.run("destroy", inputs, secrets=secrets)
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    assert settings["bucket"] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    gone = container.run("destroy", inputs, secrets=secrets)
    gone.assert_ok()
    assert "nothing to destroy" in gone.log
    assert lock_files(state, "current-sdk", name) == []
