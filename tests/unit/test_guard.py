"""The replacement guard's decisions (job/guard.py): what it refuses, what lets a change through (an address, a
glob, `all`), what `protect:` keeps even from `all`, unfinished creates, and what it tells the run report."""

from __future__ import annotations

import io

import pytest

from iac_runner.backends.base import ChangeSummary, ResourceChange, StackFile
from iac_runner.common import typed
from iac_runner.common.errors import ConfigError, ExitCode
from iac_runner.job.guard import Guard
from iac_runner.job.settings import Settings
from tests.helpers import log_messages

BUCKET = ResourceChange("aws_s3_bucket.this", "replace", "aws_s3_bucket", "cannot update", ("bucket",))
PARAMETER = ResourceChange("aws_ssm_parameter.token", "replace", "aws_ssm_parameter", "cannot update", ("name",))
DB = ResourceChange("module.db.aws_db_instance.main", "remove", "aws_db_instance")
ADDED = ResourceChange("aws_s3_bucket.logs", "add", "aws_s3_bucket")
CHANGED = ResourceChange("aws_s3_bucket_versioning.this", "change", "aws_s3_bucket_versioning")
TAINTED = ResourceChange("aws_instance.web", "replace", "aws_instance", "tainted", (), unfinished=True)


def plan(*changes: ResourceChange) -> ChangeSummary:
    return ChangeSummary(changes)


def refused(guard: Guard, summary: ChangeSummary) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        guard(summary)
    return raised.value


def test_adds_and_in_place_changes_always_pass() -> None:
    guard = Guard()
    guard(plan(ADDED, CHANGED))
    assert guard.decision == {"status": "passed", "allowed": [], "protected": [], "refused": [], "let_through": []}


def test_a_replacement_not_allowed_is_refused_naming_resource_action_and_attribute() -> None:
    guard = Guard()
    error = refused(guard, plan(ADDED, BUCKET, PARAMETER, DB))
    assert error.exit_code == ExitCode.CONFIG
    assert error.summary == (
        "The create would replace or remove 3 existing resource(s), and the replacement guard refuses it: nothing "
        "was changed."
    )
    assert error.where == (
        "aws_s3_bucket.this (replace: bucket forces it); aws_ssm_parameter.token (replace: name forces it); "
        "module.db.aws_db_instance.main (remove)"
    )
    assert error.fix.startswith(
        "If that is intended, allow it: "
        "IAC_RUNNER_ALLOW_REPLACE=aws_s3_bucket.this,aws_ssm_parameter.token,module.db.aws_db_instance.main (or `all`)"
    )
    assert error.resource == "aws_s3_bucket.this"
    assert guard.decision is not None and guard.decision["status"] == "refused"
    assert guard.decision["refused"] == [
        {"address": "aws_s3_bucket.this", "action": "replace", "why": "not allowed", "forced_by": ["bucket"]},
        {"address": "aws_ssm_parameter.token", "action": "replace", "why": "not allowed", "forced_by": ["name"]},
        {"address": "module.db.aws_db_instance.main", "action": "remove", "why": "not allowed"},
    ]


def test_the_engines_reason_where_it_names_no_attribute() -> None:
    replaced = ResourceChange("Bucket", "replace", "AWS::S3::Bucket", "Replacement: Conditional")
    assert "Bucket (replace: Replacement: Conditional)" in refused(Guard(), plan(replaced)).where


def test_allowed_by_address(logged: io.StringIO) -> None:
    guard = Guard(allowed={"aws_s3_bucket.this", "aws_ssm_parameter.token"})
    guard(plan(BUCKET, PARAMETER, CHANGED))
    assert guard.decision is not None and guard.decision["status"] == "passed"
    assert guard.decision["let_through"] == [
        {"address": "aws_s3_bucket.this", "action": "replace"},
        {"address": "aws_ssm_parameter.token", "action": "replace"},
    ]
    assert log_messages(logged) == [
        "replacement guard: aws_s3_bucket.this (replace: bucket forces it) goes ahead, it is allowed",
        "replacement guard: aws_ssm_parameter.token (replace: name forces it) goes ahead, it is allowed",
    ]


def test_allowing_some_refuses_the_others_and_names_only_them() -> None:
    error = refused(Guard(allowed={"aws_s3_bucket.this"}), plan(BUCKET, PARAMETER))
    assert error.where == "aws_ssm_parameter.token (replace: name forces it)"
    assert "IAC_RUNNER_ALLOW_REPLACE=aws_ssm_parameter.token (or `all`)" in error.fix


@pytest.mark.parametrize(
    ("pattern", "still_refused"),
    [
        ("aws_s*", ["module.db.aws_db_instance.main"]),
        ("aws_*.this", ["module.db.aws_db_instance.main"]),
        ("module.db.*", ["aws_s3_bucket.this"]),
        ("*", []),
    ],
)
def test_globs(pattern: str, still_refused: list[str]) -> None:
    guard = Guard(allowed={pattern})
    summary = plan(BUCKET, DB)
    if still_refused:
        refused(guard, summary)
    else:
        guard(summary)
    assert guard.decision is not None
    assert [r["address"] for r in guard.decision["refused"]] == still_refused


def test_a_glob_matches_the_whole_address_not_a_part() -> None:
    refused(Guard(allowed={"aws_s3_bucket"}), plan(BUCKET))
    refused(Guard(allowed={"this"}), plan(BUCKET))


def test_all_lets_every_replacement_and_removal_through() -> None:
    guard = Guard(allowed={"all"})
    guard(plan(BUCKET, PARAMETER, DB))
    assert guard.decision is not None and len(guard.decision["let_through"]) == 3


def test_protect_wins_over_all_and_over_an_address() -> None:
    guard = Guard(allowed={"all", "aws_s3_bucket.this"}, protected={"aws_s3_bucket.this"})
    error = refused(guard, plan(BUCKET, PARAMETER))
    assert error.where == "aws_s3_bucket.this (replace: bucket forces it) — protected"
    assert error.fix == (
        "aws_s3_bucket.this is under `protect:` in iac-runner.yaml: only a destroy removes a protected resource."
    )
    assert guard.decision is not None
    assert guard.decision["refused"] == [
        {"address": "aws_s3_bucket.this", "action": "replace", "why": "protected", "forced_by": ["bucket"]}
    ]
    assert guard.decision["let_through"] == [{"address": "aws_ssm_parameter.token", "action": "replace"}]


def test_protected_and_not_allowed_together() -> None:
    error = refused(Guard(protected={"module.db.*"}), plan(BUCKET, DB))
    assert (
        error.where
        == "aws_s3_bucket.this (replace: bucket forces it); module.db.aws_db_instance.main (remove) — protected"
    )
    assert error.fix.startswith("If that is intended, allow it: IAC_RUNNER_ALLOW_REPLACE=aws_s3_bucket.this (or `all`)")
    assert error.fix.endswith(
        "module.db.aws_db_instance.main is under `protect:` in iac-runner.yaml: only a destroy removes a protected "
        "resource."
    )
    assert "  " not in error.fix


def test_an_unfinished_create_is_replaced_without_asking(logged: io.StringIO) -> None:
    """tofu's tainted resource: its create never finished, so replacing it loses nothing."""
    guard = Guard()
    guard(plan(TAINTED))
    assert guard.decision is not None and guard.decision["status"] == "passed"
    assert log_messages(logged) == ["replacement guard: aws_instance.web never finished its create (tainted): replaced"]


def test_an_unfinished_create_that_is_protected_is_still_refused() -> None:
    error = refused(Guard(protected={"aws_instance.*"}), plan(TAINTED))
    assert "aws_instance.web (replace: tainted) — protected" in error.where


def test_preview_refuses_nothing_and_says_what_a_create_would_refuse(logged: io.StringIO) -> None:
    guard = Guard(allowed={"aws_ssm_parameter.token"}, protected={"module.db.*"})
    guard.preview(plan(BUCKET, PARAMETER, DB, ADDED))
    assert log_messages(logged)[-2:] == [
        "replacement guard: a create would refuse aws_s3_bucket.this (replace: bucket forces it) (not allowed)",
        "replacement guard: a create would refuse module.db.aws_db_instance.main (remove) (protected)",
    ]
    assert guard.decision is not None and guard.decision["status"] == "refused"


def test_the_settings_and_the_stack_file() -> None:
    assert Settings(allow_replace=" aws_s3_bucket.this, ,Bucket ").allowed_replacements() == {
        "aws_s3_bucket.this",
        "Bucket",
    }
    assert Settings().allowed_replacements() == set()
    stack_file = typed.build(StackFile, {"allow_replace": ["a.*"], "protect": ["b"]})
    assert (stack_file.allow_replace, stack_file.protect) == (("a.*",), ("b",))
