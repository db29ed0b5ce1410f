"""The run report without an engine: every outcome's document against docs/report.schema.json, no secret in it;
and the engines' drift output (a tofu plan's `show -json`, Pulumi's refresh-preview events) as the runner's drift,
on the shapes the engines gave for stacks/s3-bucket in moto."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import EngineEvent

from iac_runner.backends.base import ChangeSummary, Drift, DriftedResource, Output, ResourceChange
from iac_runner.backends.opentofu import diagnostics
from iac_runner.backends.pulumi.errors import Scene, classify
from iac_runner.backends.pulumi.session import Progress
from iac_runner.common.errors import (
    ConfigError,
    Diagnostic,
    DriftFound,
    EngineError,
    Interrupted,
    RunTimeout,
)
from iac_runner.common.secrets import REGISTRY
from iac_runner.job.report import RunReport, changes_json, drift_json, exit_code_of
from tests.helpers import check_report

# -- every outcome fits the schema --------------------------------------------------------------------------------

SYNTAX = ConfigError(
    "The OpenTofu configuration is invalid: Unclosed configuration block.",
    where="main.tf:3",
    fix="Correct the configuration at the place shown.",
    diagnostics=(Diagnostic("error", "Unclosed configuration block", "There is no closing brace.", "", "main.tf", 3),),
)
FAILED_RESOURCE = EngineError(
    "Stack orders could not be created: it ended in ROLLBACK_COMPLETE; Bucket failed: orders already exists",
    where="first failure: Bucket (AWS::S3::Bucket): orders already exists",
    resource="Bucket",
    diagnostics=(Diagnostic("error", "orders already exists", address="Bucket"),),
)
DRIFT = Drift((DriftedResource("aws_s3_bucket.this", "aws_s3_bucket", ("tags",)), DriftedResource("t", deleted=True)))


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (None, "succeeded", 0),
        (SYNTAX, "failed", 2),
        (FAILED_RESOURCE, "failed", 1),
        (RunTimeout("The run exceeded its time limit of 3 s while applying."), "timed_out", 3),
        (Interrupted("The run was interrupted by SIGTERM while applying."), "interrupted", 130),
        (KeyboardInterrupt(), "interrupted", 130),
        (DriftFound("Drift: 2 resource(s) differ from the stack's state."), "succeeded", 4),
    ],
    ids=["ok", "syntax", "resource", "timeout", "sigterm", "ctrl-c", "drift"],
)
def test_every_outcome_writes_a_report_that_fits_the_schema(
    error: BaseException | None, status: str, code: int, tmp_path: Path
) -> None:
    report = RunReport("create", backend="opentofu", stack="orders", source={"url": "https://example.com/s.git"})
    report.engine_version("tofu", "1.12.6")
    with report.phase("checkout"):
        pass
    with pytest.raises(type(error)) if error else contextlib.nullcontext(), report.phase("apply"):
        report.changes(
            ChangeSummary((ResourceChange("aws_s3_bucket.this", "replace", "aws_s3_bucket", "x", ("bucket",)),))
        )
        if error:
            raise error
    if isinstance(error, DriftFound):
        report.drift(DRIFT)
    report.output_names([Output("bucket", "orders"), Output("token", "t", secret=True)])
    path = tmp_path / "report.json"

    report.write(path, exit_code_of(error), error)

    document = json.loads(path.read_text())
    check_report(document)
    assert document["result"] == {"status": status, "exit_code": code}
    assert document["phases"][-1]["result"] == ("succeeded" if isinstance(error, DriftFound) else status)
    assert (document["error"] is None) == (status == "succeeded")
    assert document["changes"]["replace"] == 1 and document["changes"]["resources"][0]["attributes"] == ["bucket"]
    assert document["outputs"] == {"values": ["bucket"], "secrets": ["token"]}
    if error is SYNTAX:
        assert document["error"]["diagnostics"] == [
            {
                "severity": "error",
                "summary": "Unclosed configuration block",
                "detail": "There is no closing brace.",
                "file": "main.tf",
                "line": 3,
            }
        ]
    if error is FAILED_RESOURCE:
        assert document["error"]["resource"] == "Bucket"


def test_the_schema_refuses_what_no_run_writes(tmp_path: Path) -> None:
    report = RunReport("create")
    report.write(tmp_path / "r.json", 0, None)
    document = json.loads((tmp_path / "r.json").read_text())
    check_report(document)
    for broken in (
        {**document, "result": {"status": "failed", "exit_code": 1}},  # a failure without its error
        {**document, "result": {"status": "timed_out", "exit_code": 1}},
        {**document, "outputs": {"values": {"bucket": "orders"}, "secrets": []}},  # values, not names
        {**document, "started": "yesterday"},
        {**document, "result": {"status": "succeeded", "exit_code": 4}},  # drift found, but no drift
    ):
        with pytest.raises(AssertionError, match="does not fit"):
            check_report(broken)


def test_a_secret_value_never_reaches_the_report(tmp_path: Path) -> None:
    secret = "r3port-Secret-51b2"  # not the suite's SENTINEL: the registry is the process's, and stays so
    REGISTRY.add(secret)
    report = RunReport("create", stack="orders")
    error = EngineError(
        f"the provider said {secret} is wrong",
        where=f"token={secret}",
        diagnostics=(Diagnostic("error", "bad token", f"got {secret}", "token"),),
    )
    report.write(tmp_path / "r.json", 1, error)
    text = (tmp_path / "r.json").read_text()
    assert secret not in text and "***" in text
    check_report(json.loads(text))


# -- tofu: a saved plan's resource_drift, kept to what an apply would put back ----------------------------------

BUCKET = {"bucket": "tf-bucket", "arn": "arn:aws:s3:::tf-bucket"}
CREATED = {**BUCKET, "tags": {"environment": "development", "managed-by": "iac-runner"}}
CREATED["tags_all"] = CREATED["tags"]
PARAMETER = {"name": "/iac-runner/tf-bucket/api-token", "type": "SecureString", "tags": None}


def _entry(address: str, actions: list[str], before: Any, after: Any, **extra: Any) -> dict[str, Any]:
    kind, name = address.split(".")
    return {
        "address": address,
        "mode": "managed",
        "type": kind,
        "name": name,
        "provider_name": "registry.opentofu.org/hashicorp/aws",
        "change": {"actions": actions, "before": before, "after": after, **extra},
    }


def test_tofu_drift_right_after_a_create_is_none() -> None:
    """What tofu 1.12 with the aws provider 5.100 gave for stacks/s3-bucket/opentofu right after its create: the
    refresh found the bucket's computed `versioning` moved (by aws_s3_bucket_versioning) and the parameter's
    `tags` null -> {}; the plan changes nothing, so nothing drifted."""
    versioning = {"versioning": [{"enabled": False, "mfa_delete": False}]}
    plan = {
        "resource_drift": [
            _entry(
                "aws_s3_bucket.this",
                ["update"],
                {**CREATED, **versioning},
                {**CREATED, "versioning": [{"enabled": True, "mfa_delete": False}]},
            ),
            _entry("aws_ssm_parameter.token", ["update"], PARAMETER, {**PARAMETER, "tags": {}}),
        ],
        "resource_changes": [
            _entry("aws_s3_bucket.this", ["no-op"], CREATED, CREATED),
            _entry("aws_s3_bucket_versioning.this", ["no-op"], {"bucket": "tf-bucket"}, {"bucket": "tf-bucket"}),
            _entry("aws_ssm_parameter.token", ["no-op"], PARAMETER, PARAMETER),
        ],
    }
    assert diagnostics.drift(plan) == Drift()


def test_tofu_drift_names_changed_attributes_and_deleted_resources() -> None:
    """Tags changed and the parameter deleted behind the state's back (the same stack, in moto)."""
    hacked = {**CREATED, "tags": {"environment": "hacked"}, "tags_all": {"environment": "hacked"}}
    plan = {
        "resource_drift": [
            _entry(
                "aws_s3_bucket.this",
                ["update"],
                {**CREATED, "versioning": [{"enabled": False}]},
                {**hacked, "versioning": [{"enabled": True}]},
            ),
            _entry("aws_ssm_parameter.token", ["delete"], PARAMETER, None),
        ],
        "resource_changes": [
            _entry("aws_s3_bucket.this", ["update"], hacked, CREATED, after_unknown={}),
            _entry("aws_ssm_parameter.token", ["create"], None, PARAMETER, after_unknown={"arn": True}),
        ],
    }
    assert diagnostics.drift(plan) == Drift(
        (
            DriftedResource("aws_s3_bucket.this", "aws_s3_bucket", ("tags", "tags_all")),
            DriftedResource("aws_ssm_parameter.token", "aws_ssm_parameter", (), deleted=True),
        )
    )


def test_tofu_drift_the_stack_ignores_is_none() -> None:
    """`lifecycle { ignore_changes = [tags] }`: the refresh sees the tags, the plan leaves them: no drift."""
    hacked = {**CREATED, "tags": {"environment": "hacked"}}
    plan = {
        "resource_drift": [_entry("aws_s3_bucket.this", ["update"], CREATED, hacked)],
        "resource_changes": [_entry("aws_s3_bucket.this", ["no-op"], hacked, hacked)],
    }
    assert diagnostics.drift(plan) == Drift()


# -- pulumi: the refresh preview's events -------------------------------------------------------------------------

URN = "urn:pulumi:rx-pu::s3-bucket::pulumi-python:dynamic:Resource::"
MASKED = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "[secret]"}
TAGS = {"environment": "development", "managed-by": "iac-runner"}
BUCKET_OUTS = {"__provider": MASKED, "arn": "arn:aws:s3:::b", "bucket": "b", "region": "us-east-1", "tags": TAGS,
               "versioning": True}  # fmt: skip
BUCKET_INS = {"__provider": MASKED, "bucket": "b", "tags": TAGS, "versioning": True}
TOKEN_OUTS = {"__provider": MASKED, "description": "API token", "name": "/iac-runner/b/api-token", "value": MASKED}


def _outputs_event(op: str, name: str, old: tuple[Any, Any], new: Any, kind: str = "") -> EngineEvent:
    kind = kind or "pulumi-python:dynamic:Resource"
    urn = f"urn:pulumi:rx-pu::s3-bucket::{kind}::{name}"
    state = {"type": kind, "urn": urn, "custom": True, "id": name}
    metadata = {
        "op": op,
        "urn": urn,
        "type": kind,
        "provider": "urn:pulumi:rx-pu::s3-bucket::pulumi:providers:pulumi-python::default::1a2b",
        "old": {**state, "inputs": old[0], "outputs": old[1]},
        "new": {**state, "inputs": old[0], "outputs": new} if new is not None else None,
    }
    return EngineEvent.from_json({"sequence": 1, "timestamp": 1, "resOutputsEvent": {"metadata": metadata}})


def test_pulumi_refresh_preview_steps_that_update_or_delete_are_the_drift() -> None:
    """What pulumi 3.276 sent for stacks/s3-bucket/pulumi with the bucket's tags changed and the parameter
    deleted in moto: no diffs from the dynamic providers, so the outputs are compared (the masked secrets alike)."""
    progress = Progress(refresh=True)
    events = [
        _outputs_event("same", "rx-pu", ({}, {"bucket": "b"}), {"bucket": "b"}, kind="pulumi:pulumi:Stack"),
        _outputs_event("delete", "token", ({}, TOKEN_OUTS), None),
        _outputs_event("update", "bucket", (BUCKET_INS, BUCKET_OUTS),
                       {**BUCKET_OUTS, "tags": {**TAGS, "environment": "hacked"}}),
        _outputs_event("same", "other", (BUCKET_INS, BUCKET_OUTS), BUCKET_OUTS),
    ]  # fmt: skip
    for event in events:
        progress(event)
    kind = "pulumi-python:dynamic:Resource"
    assert progress.drifted == [
        DriftedResource("token", kind, (), deleted=True),
        DriftedResource("bucket", kind, ("tags",)),
    ]


def test_resources_are_listed_by_address_whatever_order_the_engine_finished_them_in() -> None:
    """Pulumi runs steps in parallel: the same drift or plan arrives in either order. The report, `--json` and
    the messages list resources by address, so two runs over the same change read (and diff) the same."""
    kind = "pulumi-python:dynamic:Resource"
    token, bucket = DriftedResource("token", kind, (), deleted=True), DriftedResource("bucket", kind, ("tags",))
    assert Drift((token, bucket)) == Drift((bucket, token))
    assert [r["address"] for r in drift_json(Drift((token, bucket)))["resources"]] == ["bucket", "token"]
    add, change = ResourceChange("token", "add", kind), ResourceChange("bucket", "change", kind)
    assert ChangeSummary((add, change)) == ChangeSummary((change, add))
    assert [r["address"] for r in changes_json(ChangeSummary((add, change)))["resources"]] == ["bucket", "token"]


def test_pulumi_drift_an_earlier_refresh_wrote_into_the_state_is_still_named() -> None:
    """After a refresh wrote the changed tags into the state's outputs (an `up --refresh` that failed later), the
    state's inputs still hold what the program said: the tags are still named."""
    hacked = {**BUCKET_OUTS, "tags": {**TAGS, "environment": "hacked"}}
    progress = Progress(refresh=True)
    progress(_outputs_event("update", "bucket", (BUCKET_INS, hacked), hacked))
    assert progress.drifted == [DriftedResource("bucket", "pulumi-python:dynamic:Resource", ("tags",))]


def test_a_providers_already_exists_is_the_resources_failure_not_a_concurrent_stack() -> None:
    """pulumi 3.276's text for a dynamic provider's ParameterAlreadyExists (its traceback names the stack's
    folder): the failing resource, named for the report; only the engine's own "stack '…' already exists" is a
    stack another run created at the same moment."""
    scene = Scene("s3-bucket", "taken", Path("/work/stack"), None, "/home/runner/.pulumi")
    provider = (
        '  File "/tmp/iac-runner-work-1/stack/stacks/s3-bucket/pulumi/__main__.py", line 144, in _put\n'
        "botocore.errorfactory.ParameterAlreadyExists: An error occurred (ParameterAlreadyExists) when calling the "
        "PutParameter operation: The parameter already exists."
    )
    error = classify(f"error: update failed\n{provider}", scene, "updating the stack", [("token", provider)])
    assert error.resource == "token" and "Resource token failed" in error.summary, error.summary
    raced = classify("error: stack 'organization/s3-bucket/taken' already exists", scene, "selecting the stack")
    assert "created by another run" in raced.summary and raced.transient
