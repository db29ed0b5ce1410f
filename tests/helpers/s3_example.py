"""What every backend's `stacks/s3-bucket` example must leave in moto and in the driver's files."""

from __future__ import annotations

from typing import Any

from tests.helpers import SENTINEL, Result

BUCKET = "contract-bucket"
INPUTS = {"bucket": BUCKET, "environment": "development", "versioning": True}
PARAMETER = f"/iac-runner/{BUCKET}/api-token"


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
