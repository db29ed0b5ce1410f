"""Conformance: the driver's whole lifecycle of `stacks/s3-bucket/<backend>` through the container contract
against moto, the same for every backend — destroy of what never existed, create, create again (no change), an
update, destroy, destroy again — with the same output names, value/secret split and JSON types, so a resource
definition can switch backends without its consumers noticing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from iac_runner import backends
from tests.helpers import SENTINEL, Container, s3_client, s3_example, ssm_client, unique
from tests.helpers.pulumi import PASSPHRASE

#: Every built-in backend has an s3-bucket stack (tests/helpers/s3_example.py says what it must leave behind).
BACKENDS = backends.builtins()
SHAPE = ({"bucket": "str", "arn": "str", "region": "str"}, {"tokenParameter": "str"})


def shape(outputs: dict[str, Any]) -> dict[str, str]:
    """Each output's JSON type."""
    return {name: type(value).__name__ for name, value in outputs.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_s3_bucket_lifecycle_is_the_same_on_every_backend(
    backend: str, container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    s3, ssm = s3_client(aws), ssm_client(aws)
    s3.create_bucket(Bucket="conformance-state")
    (tmp_path / "tmp").mkdir()
    container.env.update(
        {
            **aws,
            "TMPDIR": str(tmp_path / "tmp"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "IAC_RUNNER_SOURCE_URL": stacks_repo.as_uri(),
            "IAC_RUNNER_SOURCE_PATH": f"stacks/s3-bucket/{backend}",
            "IAC_RUNNER_STACK_NAME": unique(f"conformance-{backend}"),
            "IAC_RUNNER_STATE_URL": f"s3://conformance-state/{backend}",
        }
    )
    secrets = {"apiToken": SENTINEL}

    never_created = container.run("destroy", s3_example.INPUTS, secrets=secrets)
    never_created.assert_ok()
    assert never_created.json("values") == {} and never_created.json("secrets") == {}
    assert "nothing to destroy" in never_created.log

    created = container.run("create", s3_example.INPUTS, secrets=secrets)
    s3_example.assert_created(created, s3, ssm, "String" if backend == "cloudformation" else "SecureString")
    assert f"with backend {backend}" in created.log and "resolved to commit" in created.log
    assert (shape(created.json("values")), shape(created.json("secrets"))) == SHAPE
    assert stat.S_IMODE(created.files["secrets"].stat().st_mode) == 0o600
    assert not created.files["error"].exists()

    unchanged = container.run("create", s3_example.INPUTS, secrets=secrets)
    unchanged.assert_ok()
    assert "no changes" in unchanged.log
    assert unchanged.json("values") == created.json("values")
    assert unchanged.json("secrets") == created.json("secrets")

    updated = container.run("create", {**s3_example.INPUTS, "environment": "production"}, secrets=secrets)
    updated.assert_ok()
    assert s3_example.tags(s3)["environment"] == "production"
    assert updated.json("values") == created.json("values")

    s3_example.assert_destroyed(container.run("destroy", s3_example.INPUTS, secrets=secrets), s3, ssm)

    again = container.run("destroy", s3_example.INPUTS, secrets=secrets)
    again.assert_ok()
    assert again.json("values") == {} and again.json("secrets") == {}
    assert "nothing to destroy" in again.log
