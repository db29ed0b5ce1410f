"""The container contract for opentofu, run as the Container Driver runs it, with the real tofu (and moto)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.helpers import (
    SENTINEL,
    STACKS,
    Container,
    base_env,
    isolate,
    run_cli,
    s3_client,
    unique,
)
from tests.helpers.tofu import SMALL_TF, stack_files, state_resources

# -- the lifecycle --------------------------------------------------------------------------------------------


def test_create_noop_update_destroy_twice_with_file_state(
    container: Container, stacks_repo: Path, tmp_path: Path
) -> None:
    """random-password from the stacks repo (file:// git URL), state in file://: the driver's whole lifecycle."""
    name = unique("rp")
    state = isolate(
        container,
        tmp_path,
        IAC_RUNNER_SOURCE_URL=stacks_repo.as_uri(),
        IAC_RUNNER_SOURCE_PATH="stacks/random-password/opentofu",
        IAC_RUNNER_STACK_NAME=name,
    )
    inputs = {"name": "orders-db", "length": 32, "labels": {"team": "payments"}}
    secrets = {"salt": SENTINEL}

    never_created = container.run("destroy", inputs, secrets=secrets)
    never_created.assert_ok()
    assert never_created.json("values") == {} and never_created.json("secrets") == {}
    assert "nothing to destroy" in never_created.log

    created = container.run("create", inputs, secrets=secrets)
    created.assert_ok()
    values, secret_values = created.json("values"), created.json("secrets")
    # Split by `sensitive`, JSON types kept: string, number, map.
    assert values == {"name": "orders-db", "length": 32, "labels": {"team": "payments"}}
    assert isinstance(values["length"], int)
    assert set(secret_values) == {"password"}
    assert isinstance(secret_values["password"], str) and len(secret_values["password"]) == 32
    assert secret_values["password"] not in created.log
    assert stat.S_IMODE(created.files["secrets"].stat().st_mode) == 0o600
    assert not created.files["error"].exists()
    assert "resolved to commit" in created.log
    assert "plan: 2 to add, 0 to change, 0 to remove" in created.log
    state_file = state / name / "terraform.tfstate"
    assert sorted(state_resources(state_file)) == ["random_password.this", "terraform_data.record"]

    unchanged = container.run("create", inputs, secrets=secrets)
    unchanged.assert_ok()
    assert "no changes" in unchanged.log
    assert unchanged.json("values") == values and unchanged.json("secrets") == secret_values

    updated = container.run("create", {**inputs, "labels": {"team": "payments", "tier": "2"}}, secrets=secrets)
    updated.assert_ok()
    assert "plan: 0 to add, 1 to change, 0 to remove" in updated.log
    assert updated.json("values")["labels"] == {"team": "payments", "tier": "2"}
    assert updated.json("secrets") == secret_values, "the password's keepers did not change"

    destroyed = container.run("destroy", inputs, secrets=secrets)
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    assert state_resources(state_file) == []

    again = container.run("destroy", inputs, secrets=secrets)
    again.assert_ok()
    assert again.json("values") == {} and again.json("secrets") == {}
    assert "nothing to destroy" in again.log


def test_state_in_moto_s3(container: Container, aws: dict[str, str], tmp_path: Path) -> None:
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="tofu-state")
    name = unique("s3state")
    isolate(container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_STATE_URL="s3://tofu-state/team/a")
    files = {"main.tf": SMALL_TF}
    inputs = {"name": "in-s3", "size": 3}

    never_created = container.run("destroy", inputs, secrets={"token": SENTINEL}, files=files)
    never_created.assert_ok()
    assert never_created.json("values") == {} and never_created.json("secrets") == {}
    assert "nothing to destroy" in never_created.log

    created = container.run("create", inputs, secrets={"token": SENTINEL}, files=files)
    created.assert_ok()
    assert created.json("values") == {"name": "in-s3", "size": 3, "tags": {}}
    assert created.json("secrets") == {"token": SENTINEL}
    key = f"team/a/{name}/terraform.tfstate"
    assert f"s3://tofu-state/{key}" in created.log
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tofu-state").get("Contents", [])]
    assert keys == [key], "the state object is there and the S3 lock file is released"
    state = json.loads(s3.get_object(Bucket="tofu-state", Key=key)["Body"].read())
    assert [r["type"] for r in state["resources"]] == ["terraform_data"]

    unchanged = container.run("create", inputs, secrets={"token": SENTINEL}, files=files)
    unchanged.assert_ok()
    assert "no changes" in unchanged.log

    destroyed = container.run("destroy", inputs, secrets={"token": SENTINEL}, files=files)
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    state = json.loads(s3.get_object(Bucket="tofu-state", Key=key)["Body"].read())
    assert state["resources"] == []


def test_output_equal_to_a_secret_input_moves_to_the_secrets_file(container: Container, tmp_path: Path) -> None:
    """`name` is not sensitive in the stack, but here it arrives as a secret input: its output is moved, with its
    real value (not the log's mask), to the secrets file."""
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("echo"))
    result = container.run(
        "create", {}, secrets={"name": SENTINEL, "token": "t0ken-value"}, files={"main.tf": SMALL_TF}
    )
    result.assert_ok()
    assert result.json("values") == {"size": 1, "tags": {}}
    assert result.json("secrets") == {"name": SENTINEL, "token": "t0ken-value"}
    assert "output 'name' holds a secret value" in result.log


# -- companion files the driver's `files` input writes beside the code ------------------------------------------


def test_tfvars_files_and_tf_var_env_count_as_provided(container: Container, tmp_path: Path) -> None:
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("companions"))
    files = {
        "main.tf": SMALL_TF,
        # `name` (required) only here; `size` here too, but the resource inputs win.
        "terraform.tfvars.json": json.dumps({"name": "from-tfvars", "size": 5}),
        "extra.auto.tfvars": 'tags = { from = "auto-tfvars" }\n',
    }
    # `token` (required, sensitive) only as TF_VAR_*, the way secret_refs pass it today.
    result = container.run("create", {"size": 7}, files=files, env={"TF_VAR_token": "token-from-tf-var"})
    result.assert_ok()
    assert result.json("values") == {"name": "from-tfvars", "size": 7, "tags": {"from": "auto-tfvars"}}
    assert result.json("secrets") == {"token": "token-from-tf-var"}

    # `iac-runner validate` counts them as provided too.
    scripts = result.out_dir
    assert scripts is not None
    env = {**container.env, "TF_VAR_token": "token-from-tf-var"}
    del env["IAC_RUNNER_STATE_URL"]
    validated = run_cli(["validate", str(scripts), "--var", "size=7", "--stack-name", unique("companions")], env)
    validated.assert_ok()
    assert "is valid" in validated.stdout


def test_companion_files_join_a_git_checkout(container: Container, stacks_repo: Path, tmp_path: Path) -> None:
    """With the stack from git, the tfvars the driver's `files` wrote into SCRIPTS_DIRECTORY still apply."""
    isolate(
        container,
        tmp_path,
        IAC_RUNNER_STACK_NAME=unique("git-companions"),
        IAC_RUNNER_SOURCE_URL=stacks_repo.as_uri(),
        IAC_RUNNER_SOURCE_PATH="stacks/random-password/opentofu",
    )
    files = {"terraform.tfvars.json": json.dumps({"name": "from-driver-files", "length": 20})}
    result = container.run("create", {}, secrets={"salt": SENTINEL}, files=files)
    result.assert_ok()
    assert result.json("values")["name"] == "from-driver-files"
    assert result.json("values")["length"] == 20
    assert "using terraform.tfvars.json from SCRIPTS_DIRECTORY" in result.log
    container.run("destroy", {}, secrets={"salt": SENTINEL}, files=files).assert_ok()


def test_own_backend_block_is_kept(container: Container, tmp_path: Path) -> None:
    own = tmp_path / "own" / "terraform.tfstate"
    own.parent.mkdir()
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("own-backend"))
    files = {"main.tf": SMALL_TF, "backend.tf": f'terraform {{\n  backend "local" {{\n    path = "{own}"\n  }}\n}}\n'}
    inputs = {"name": "own"}

    with_url = container.run("create", inputs, secrets={"token": SENTINEL}, files=files)
    with_url.assert_ok()
    assert "IAC_RUNNER_STATE_URL is ignored" in with_url.log
    assert state_resources(own) == ["terraform_data.this"]
    assert not state.exists(), "nothing was written where IAC_RUNNER_STATE_URL points"

    # The stack brings its own state home, so container mode does not require IAC_RUNNER_STATE_URL.
    without_url = container.run(
        "create", inputs, secrets={"token": SENTINEL}, files=files, env={"IAC_RUNNER_STATE_URL": None}
    )
    without_url.assert_ok()
    assert "no changes" in without_url.log
    assert "IAC_RUNNER_STATE_URL is ignored" not in without_url.log

    destroyed = container.run(
        "destroy", inputs, secrets={"token": SENTINEL}, files=files, env={"IAC_RUNNER_STATE_URL": None}
    )
    destroyed.assert_ok()
    assert state_resources(own) == []


def test_container_mode_requires_a_state_url(container: Container, tmp_path: Path) -> None:
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("no-state"))
    result = container.run(
        "create", {"name": "x"}, secrets={"token": SENTINEL}, files={"main.tf": SMALL_TF},
        env={"IAC_RUNNER_STATE_URL": None},
    )  # fmt: skip
    assert result.returncode == 2, result.log
    assert "IAC_RUNNER_STATE_URL is required for the opentofu backend" in result.error
    assert not result.files["values"].exists() and not result.files["secrets"].exists()


@pytest.mark.parametrize("family", ["redis", "s3-bucket"])
def test_aws_examples_validate_offline(family: str, tmp_path: Path) -> None:
    """Validated with the aws provider from the offline mirror; redis is for real AWS only."""
    stack = tmp_path / family
    stack.mkdir()
    for name, text in stack_files(STACKS / family / "opentofu").items():
        (stack / name).write_text(text)  # a copy: init writes a lock file beside the code
    inputs = STACKS / family / ("inputs.example.json" if family == "redis" else "inputs.json")
    secret = {"redis": "authToken", "s3-bucket": "apiToken"}[family]
    env = base_env({"AWS_REGION": "us-east-1", f"IAC_RUNNER_SECRET_{secret}": SENTINEL, "TMPDIR": str(tmp_path)})
    result = run_cli(["validate", str(stack), "--inputs", str(inputs), "--stack-name", unique(family)], env)
    result.assert_ok()
    assert "opentofu stack" in result.stdout and "is valid" in result.stdout
