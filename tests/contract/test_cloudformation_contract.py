"""The container contract for cloudformation, run as the Container Driver runs it, against moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SENTINEL, STACKS, Container, base_env, cfn_client, run_cli, s3_example


@pytest.fixture
def s3(container: Container, aws: dict[str, str], stacks_repo: Path) -> Container:
    container.env.update(aws)
    container.env.update(
        {
            "IAC_RUNNER_SOURCE_URL": stacks_repo.as_uri(),
            "IAC_RUNNER_SOURCE_PATH": "stacks/s3-bucket/cloudformation",
            "IAC_RUNNER_STACK_NAME": "contract-s3",
        }
    )
    return container


def test_queue_topic_list_and_number_inputs(container: Container, aws: dict[str, str], stacks_repo: Path) -> None:
    container.env.update(aws)
    container.env.update(
        {
            "IAC_RUNNER_SOURCE_URL": stacks_repo.as_uri(),
            "IAC_RUNNER_SOURCE_PATH": "stacks/queue-topic/cloudformation",
            "IAC_RUNNER_STACK_NAME": "contract-queue",
        }
    )
    inputs = {"name": "orders", "retentionSeconds": 86400, "labels": ["a", "b"]}
    result = container.run("create", inputs, secrets={"signingKey": SENTINEL})
    result.assert_ok()
    values = result.json("values")
    assert values["queueUrl"].endswith("/orders-events")
    assert values["topicArn"].endswith(":orders-events")
    assert set(result.json("secrets")) == {"signingKeyParameter"}
    assert container.run("destroy", inputs).returncode == 0


def test_output_equal_to_a_secret_input_moves_to_the_secrets_file(container: Container, aws: dict[str, str]) -> None:
    template = (
        "Parameters:\n  token:\n    Type: String\n    NoEcho: true\n"
        "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
        "Outputs:\n  echoed:\n    Value: !Ref token\n  topic:\n    Value: !Ref Topic\n"
    )
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "echo"})
    result = container.run("create", {}, secrets={"token": SENTINEL}, files={"template.yaml": template})
    result.assert_ok()
    assert result.json("secrets") == {"echoed": SENTINEL}
    assert "echoed" not in result.json("values")
    assert "holds a secret value" in result.log


def test_json_logs_are_one_object_per_line(s3: Container) -> None:
    result = s3.run("create", s3_example.INPUTS, secrets={"apiToken": SENTINEL}, env={"IAC_RUNNER_LOG_FORMAT": "json"})
    result.assert_ok()
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all({"time", "level", "event", "message"} <= r.keys() for r in records)
    assert any(r["event"] == "resource" for r in records)


def test_cli_out_dir_writes_the_driver_files(tmp_path: Path, aws: dict[str, str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(s3_example.INPUTS))
    env = base_env({**aws, "IAC_RUNNER_SECRET_apiToken": SENTINEL})
    args = ["--inputs", str(inputs), "--stack-name", "cli-s3", "--out-dir", str(out)]
    result = run_cli(["apply", str(STACKS / "s3-bucket" / "cloudformation"), *args], env)
    result.assert_ok()
    assert json.loads((out / "outputs.json").read_text())["bucket"] == "contract-bucket"
    assert set(json.loads((out / "secret-outputs.json").read_text())) == {"tokenParameter"}

    printed = run_cli(["outputs", str(STACKS / "s3-bucket" / "cloudformation"), "--stack-name", "cli-s3"], env)
    printed.assert_ok()
    assert json.loads(printed.stdout)["tokenParameter"] == "***"

    plan = run_cli(
        ["plan", str(STACKS / "s3-bucket" / "cloudformation"), "--inputs", str(inputs), "--stack-name", "cli-new"], env
    )
    plan.assert_ok()
    assert "Plan: 2 to add, 0 to change, 0 to remove" in plan.stdout
    boto = cfn_client(aws)
    names = [s["StackName"] for s in boto.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert "cli-new" not in names, "plan must leave no stack behind"

    run_cli(["destroy", str(STACKS / "s3-bucket" / "cloudformation"), "--stack-name", "cli-s3"], env).assert_ok()


def test_redis_example_validates() -> None:
    args = [
        "validate",
        str(STACKS / "redis" / "cloudformation"),
        "--inputs",
        str(STACKS / "redis" / "inputs.example.json"),
    ]
    result = run_cli(args, base_env({"AWS_REGION": "us-east-1", "IAC_RUNNER_SECRET_authToken": SENTINEL}))
    result.assert_ok()
    assert "is valid" in result.stdout
