"""The AWS settings every engine reads the same way: region, the emulator's or S3-compatible endpoint, and the
words AWS and the engines use for a state bucket that is not there."""

from __future__ import annotations

import re
from collections.abc import Mapping

from iac_runner.common.errors import ConfigError

DEFAULT_REGION = "us-east-1"
_MISSING_BUCKET = re.compile(r"nosuchbucket|no ?bucket|bucket does not exist|s3 bucket .*(not exist|not found)", re.I)


def region(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def s3_endpoint(env: Mapping[str, str]) -> str | None:
    """An emulator or S3-compatible store in front of S3 (path-style addressing then applies)."""
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def is_missing_bucket(text: str) -> bool:
    return bool(_MISSING_BUCKET.search(text))


def missing_bucket(state_url: str | None, details: str = "") -> ConfigError:
    return ConfigError(
        "The state bucket does not exist.",
        where=f"IAC_RUNNER_STATE_URL={state_url}",
        fix="Create the bucket (versioning recommended) or point IAC_RUNNER_STATE_URL at an existing one.",
        details=details,
    )
