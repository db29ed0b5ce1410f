"""Conformance: the same inputs file applied through the container contract to
stacks/s3-bucket/{cloudformation,opentofu,pulumi} against moto yields the same output names, the same value/secret
split and the same JSON types — so a resource definition can switch backends without its consumers noticing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import SENTINEL, STACKS, Container
from tests.contract.test_opentofu_contract import s3_client, unique
from tests.contract.test_pulumi_contract import PASSPHRASE

BACKENDS = ("cloudformation", "opentofu", "pulumi")
INPUTS = json.loads((STACKS / "s3-bucket" / "inputs.json").read_text())


def shape(outputs: dict[str, Any]) -> dict[str, str]:
    """Each output's JSON type."""
    return {name: type(value).__name__ for name, value in outputs.items()}


def test_s3_bucket_outputs_conform_across_backends(
    container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="conformance-state")
    (tmp_path / "tmp").mkdir()
    container.env.update({**aws, "TMPDIR": str(tmp_path / "tmp"), "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})
    container.env.update({"IAC_RUNNER_SOURCE_URL": stacks_repo.as_uri()})

    seen: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for backend in BACKENDS:
        # Distinct bucket names: the three stacks live side by side in one account.
        bucket = f"conformance-{backend}"
        inputs = {**INPUTS, "bucket": bucket}
        env = {
            "IAC_RUNNER_SOURCE_PATH": f"stacks/s3-bucket/{backend}",
            "IAC_RUNNER_STACK_NAME": unique(f"conformance-{backend}"),
            "IAC_RUNNER_STATE_URL": f"s3://conformance-state/{backend}",
        }
        created = container.run("create", inputs, secrets={"apiToken": SENTINEL}, env=env)
        created.assert_ok()
        assert f"with backend {backend}" in created.log
        values, secrets = created.json("values"), created.json("secrets")
        seen[backend] = values, secrets
        assert values["bucket"] == bucket and values["arn"] == f"arn:aws:s3:::{bucket}"
        assert secrets == {"tokenParameter": f"/iac-runner/{bucket}/api-token"}
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        destroyed = container.run("destroy", inputs, secrets={"apiToken": SENTINEL}, env=env)
        destroyed.assert_ok()
        assert destroyed.json("values") == {} and destroyed.json("secrets") == {}
        assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    reference_values, reference_secrets = seen["cloudformation"]
    assert set(reference_values) == {"bucket", "arn", "region"} and set(reference_secrets) == {"tokenParameter"}
    for backend, (values, secrets) in seen.items():
        assert shape(values) == shape(reference_values), f"{backend}: value names or types differ"
        assert shape(secrets) == shape(reference_secrets), f"{backend}: secret names or types differ"
        assert values["region"] == reference_values["region"] == "us-east-1"
