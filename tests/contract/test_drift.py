"""Drift detection of `stacks/s3-bucket` with the real engines in moto: right after a create nothing drifted (exit
0); the bucket's tags changed and the SSM parameter deleted behind the runner's back are drift (exit 4, each
resource and attribute named in the error file, the run report and `drift --json`); a create puts it back.

CloudFormation's drift detection (DetectStackDrift, DescribeStackResourceDrifts) is not implemented by moto: it
is covered with botocore's Stubber on the API's real response shapes in tests/unit/test_cloudformation_states.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import (
    SENTINEL,
    STACKS,
    Container,
    Result,
    base_env,
    check_report,
    run_cli,
    s3_client,
    s3_example,
    ssm_client,
    unique,
)

#: The two resources as each engine names them, and the bucket's tags attribute.
NAMES = {
    "opentofu": ("aws_s3_bucket.this", "aws_ssm_parameter.token", "tags"),
    "pulumi": ("bucket", "token", "tags"),
}
#: Pulumi's update compares the program with its state only: it puts drift back after a refresh.
PUT_BACK = {"opentofu": {}, "pulumi": {"IAC_RUNNER_REFRESH": "true"}}


@pytest.mark.parametrize("backend", ["opentofu", "pulumi"])
def test_drift_behind_the_runners_back_is_found_named_and_put_back(
    backend: str, container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    s3, ssm = s3_client(aws), ssm_client(aws)
    name = unique(f"drift-{backend}")
    state = s3_example.from_repo(container, tmp_path, stacks_repo, backend, name, **aws)
    s3_example.assert_created(container.run("create", s3_example.INPUTS, secrets=s3_example.SECRETS), s3, ssm)

    in_sync = container.run("drift", s3_example.INPUTS, secrets=s3_example.SECRETS)
    _assert_in_sync(in_sync)
    assert "refresh" in [p["name"] for p in in_sync.report["phases"]]

    # Behind the runner's back.
    s3.put_bucket_tagging(
        Bucket=s3_example.BUCKET,
        Tagging={"TagSet": [{"Key": "environment", "Value": "hacked"}, {"Key": "managed-by", "Value": "iac-runner"}]},
    )
    ssm.delete_parameter(Name=s3_example.PARAMETER)

    drifted = container.run("drift", s3_example.INPUTS, secrets=s3_example.SECRETS)
    assert drifted.returncode == 4, drifted.log
    bucket, token, tags = NAMES[backend]
    report = drifted.report
    assert report["result"] == {"status": "succeeded", "exit_code": 4} and report["error"] is None
    found = {r["address"]: r for r in report["drift"]["resources"]}
    assert set(found) == {bucket, token}, report["drift"]
    assert found[bucket]["status"] == "modified" and tags in found[bucket]["attributes"]
    assert found[token]["status"] == "deleted"
    error = drifted.error
    assert error.startswith("Drift: 2 resource(s) differ from the stack's state."), error
    assert f"- {bucket} (" in error and f"changed: {tags}" in error and f"- {token} (" in error and "deleted" in error
    assert not drifted.files["values"].exists() and not drifted.files["secrets"].exists()
    assert s3_example.tags(s3)["environment"] == "hacked", "drift detection changes nothing"

    # `iac-runner drift --json` prints the report's drift on stdout.
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(s3_example.INPUTS))
    env = {k: v for k, v in container.env.items() if not k.startswith("IAC_RUNNER_SOURCE_")}
    printed = run_cli(
        ["drift", str(STACKS / "s3-bucket" / backend), "--inputs", str(inputs), "--stack-name", name,
         "--state-url", state.as_uri(), "--json"],
        base_env({**env, "IAC_RUNNER_SECRET_apiToken": SENTINEL}),
    )  # fmt: skip
    assert printed.returncode == 4, printed.log
    check_report(json.loads(printed.stdout), "drift")
    assert json.loads(printed.stdout) == report["drift"]

    put_back = container.run("create", s3_example.INPUTS, secrets=s3_example.SECRETS, env=PUT_BACK[backend])
    put_back.assert_ok()
    assert s3_example.tags(s3)["environment"] == "development"
    assert ssm.get_parameter(Name=s3_example.PARAMETER, WithDecryption=True)["Parameter"]["Value"] == SENTINEL
    _assert_in_sync(container.run("drift", s3_example.INPUTS, secrets=s3_example.SECRETS))

    container.run("destroy", s3_example.INPUTS, secrets=s3_example.SECRETS).assert_ok()


def _assert_in_sync(result: Result) -> None:
    result.assert_ok()
    assert result.report["drift"] == {"drifted": 0, "resources": []}
    assert result.report["result"] == {"status": "succeeded", "exit_code": 0}
    assert "no drift" in result.log
    assert not result.files["error"].exists()
    assert not result.files["values"].exists(), "drift detection writes no output files"
