"""Plan conformance: `stacks/s3-bucket/<backend>` created in moto, then previewed with a changed input and with a
renamed bucket, through ACTION=plan (the run report's `changes`) and `iac-runner plan --json` — the same `changes`
shape on every backend, a replacement reported as `replace` with the engine's reason and the attribute that
forces it. A plan changes nothing and writes no output files. The create's and the destroy's run reports are
checked on the way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iac_runner import backends
from tests.helpers import (
    STACKS,
    Container,
    base_env,
    check_report,
    run_cli,
    s3_client,
    s3_example,
    ssm_client,
    unique,
)

BACKENDS = backends.builtins()
#: The bucket as each engine names it, and the attribute that forces its replacement when renamed.
BUCKET = {
    "opentofu": ("aws_s3_bucket.this", "aws_s3_bucket", "bucket"),
    "pulumi": ("bucket", "pulumi-python:dynamic:Resource", "bucket"),
    "cloudformation": ("Bucket", "AWS::S3::Bucket", "BucketName"),
}
#: What each engine's create does, in the report: its phases and the resources it adds.
CREATE_PHASES = {
    "opentofu": ["checkout", "init", "plan", "apply", "outputs", "write outputs"],
    "pulumi": ["checkout", "validate", "plan", "apply", "outputs", "write outputs"],
    "cloudformation": ["checkout", "validate", "plan", "apply", "outputs", "write outputs"],
}
ADDED = {
    "opentofu": {"aws_s3_bucket.this", "aws_s3_bucket_versioning.this", "aws_ssm_parameter.token"},
    "pulumi": {"bucket", "token"},
    "cloudformation": {"Bucket", "TokenParameter"},
}
ENGINE = {"opentofu": "tofu", "pulumi": "pulumi", "cloudformation": "CloudFormation API"}
PREVIOUS = '{"bucket": "from the last create"}\n'


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_shows_the_same_changes_on_every_backend(
    backend: str, container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    s3, ssm = s3_client(aws), ssm_client(aws)
    name = unique(f"plan-{backend}")
    state = s3_example.from_repo(container, tmp_path, stacks_repo, backend, name, **aws)

    created = container.run("create", s3_example.INPUTS, secrets=s3_example.SECRETS)
    s3_example.assert_created(created, s3, ssm, "String" if backend == "cloudformation" else "SecureString")
    report = created.report
    assert (report["action"], report["backend"], report["stack"]) == ("create", backend, name)
    assert report["engine"]["name"] == ENGINE[backend] and report["engine"]["version"]
    source = report["source"]
    assert source["url"] == stacks_repo.as_uri() and source["path"] == f"stacks/s3-bucket/{backend}"
    assert len(source["commit"]) == 40
    assert [p["name"] for p in report["phases"]] == CREATE_PHASES[backend]
    assert {p["result"] for p in report["phases"]} == {"succeeded"}
    changes = report["changes"]
    assert {r["address"] for r in changes["resources"]} == ADDED[backend]
    assert {r["action"] for r in changes["resources"]} == {"add"}
    assert (changes["add"], changes["change"], changes["remove"], changes["replace"]) == (len(ADDED[backend]), 0, 0, 0)
    assert report["outputs"] == {"values": ["arn", "bucket", "region"], "secrets": ["tokenParameter"]}
    assert report["result"] == {"status": "succeeded", "exit_code": 0} and report["error"] is None
    assert report["guard"]["status"] == "passed"

    # A changed input: the bucket's tags change, in place, on every engine.
    changed = {**s3_example.INPUTS, "environment": "production"}
    planned = container.run("plan", changed, secrets=s3_example.SECRETS, files={"outputs.json": PREVIOUS})
    planned.assert_ok()
    assert planned.read("values") == PREVIOUS, "a plan writes no output files"
    assert not planned.files["secrets"].exists()
    address, kind, forced = BUCKET[backend]
    report = planned.report
    assert report["action"] == "plan" and report["outputs"] is None
    assert report["changes"] == {
        "add": 0,
        "change": 1,
        "remove": 0,
        "replace": 0,
        "resources": [{"address": address, "type": kind, "action": "change"}],
    }
    assert "apply" not in [p["name"] for p in report["phases"]]
    assert s3_example.tags(s3)["environment"] == "development", "a plan changes nothing"

    # `iac-runner plan --json` prints the same object on stdout, the log on stderr.
    inputs = tmp_path / "changed.json"
    inputs.write_text(json.dumps(changed))
    printed = run_cli(
        ["plan", str(STACKS / "s3-bucket" / backend), "--inputs", str(inputs), "--stack-name", name,
         "--state-url", state.as_uri(), "--json"],
        _local_env(container.env),
    )  # fmt: skip
    printed.assert_ok()
    check_report(json.loads(printed.stdout), "changes")
    assert json.loads(printed.stdout) == report["changes"]

    # A renamed bucket: a replacement, with the engine's reason and the attribute that forces it.
    renamed = container.run("plan", {**s3_example.INPUTS, "bucket": "renamed-bucket"}, secrets=s3_example.SECRETS)
    renamed.assert_ok()
    changes = renamed.report["changes"]
    bucket = _only(changes["resources"], address)
    assert bucket["action"] == "replace" and bucket["type"] == kind, changes
    assert bucket["reason"] and forced in bucket["attributes"], bucket
    assert changes["replace"] >= 1 and changes["add"] == 0 and changes["remove"] == 0
    assert {r["action"] for r in changes["resources"]} == {"replace"}
    assert "replacement guard: a create would refuse" in renamed.log
    assert renamed.report["guard"]["status"] == "refused"
    assert s3_example.BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    destroyed = container.run("destroy", s3_example.INPUTS, secrets=s3_example.SECRETS)
    s3_example.assert_destroyed(destroyed, s3, ssm)
    report = destroyed.report
    assert "destroy" in [p["name"] for p in report["phases"]]
    assert report["outputs"] == {"values": [], "secrets": []}


def _only(resources: list[dict[str, Any]], address: str) -> dict[str, Any]:
    found = [r for r in resources if r["address"] == address]
    assert len(found) == 1, resources
    return found[0]


def _local_env(container_env: dict[str, str]) -> dict[str, str]:
    """The container's environment for a local run: the engines' and AWS's settings, no IAC_RUNNER_SOURCE_*."""
    kept = {k: v for k, v in container_env.items() if not k.startswith("IAC_RUNNER_") or k == "IAC_RUNNER_STATE_URL"}
    return base_env({**kept, **{f"IAC_RUNNER_SECRET_{k}": v for k, v in s3_example.SECRETS.items()}})
