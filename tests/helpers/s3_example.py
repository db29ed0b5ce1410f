"""What every backend's `stacks/s3-bucket` example must leave in moto and in the driver's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import SENTINEL, Container, Result, isolate
from tests.helpers.pulumi import PASSPHRASE

BUCKET = "contract-bucket"
SECRETS = {"apiToken": SENTINEL}
INPUTS = {"bucket": BUCKET, "environment": "development", "versioning": True}
PARAMETER = f"/iac-runner/{BUCKET}/api-token"


def from_repo(container: Container, tmp_path: Path, repo: Path, backend: str, name: str, **env: str) -> Path:
    """The job runs `backend`'s s3-bucket stack checked out of `repo` (private temp dir, file:// state under
    tmp_path unless `env` names another, the pulumi passphrase); returns the state dir."""
    source = {"IAC_RUNNER_SOURCE_URL": repo.as_uri(), "IAC_RUNNER_SOURCE_PATH": f"stacks/s3-bucket/{backend}"}
    return isolate(
        container, tmp_path, PULUMI_CONFIG_PASSPHRASE=PASSPHRASE, IAC_RUNNER_STACK_NAME=name, **source, **env
    )


def assert_created(created: Result, s3: Any, ssm: Any, parameter_type: str = "SecureString") -> None:
    """`parameter_type`: CloudFormation cannot create a SecureString parameter (AWS::SSM::Parameter), so its
    stack stores the token as a String."""
    created.assert_ok()
    assert created.json("values") == {"bucket": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}", "region": "us-east-1"}
    assert created.json("secrets") == {"tokenParameter": PARAMETER}
    assert tags(s3) == {"environment": "development", "managed-by": "iac-runner"}
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    parameter = ssm.get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]
    assert parameter["Value"] == SENTINEL and parameter["Type"] == parameter_type


def assert_destroyed(destroyed: Result, s3: Any, ssm: Any) -> None:
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert ssm.get_parameters(Names=[PARAMETER])["Parameters"] == []


def tags(s3: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
