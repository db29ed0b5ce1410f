"""CloudFormation stack states that moto cannot produce, replayed through botocore's Stubber.

moto never leaves a stack in ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED or DELETE_FAILED, emits no
per-resource events and does not implement drift detection (DetectStackDrift, DescribeStackResourceDrifts), so
these cases replay the CloudFormation API's real response shapes (stack ARNs, statuses,
event ids, timestamps, change set ARNs, error codes) through a real botocore client wrapped in `Stubber` — the
only place in the suite where a fake is acceptable. Every expected call is queued in order with its exact
parameters, and each test ends with `assert_no_pending_responses()`, so a test proves the exact call sequence.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import StubResponseError
from botocore.stub import ANY, Stubber

from iac_runner.backends import cloudformation
from iac_runner.backends.base import Drift, DriftedResource, Output, StackContext
from iac_runner.common.errors import ConfigError, EngineError, ExitCode, RunnerError, RunTimeout
from iac_runner.common.process import Deadline
from iac_runner.job.report import RunReport
from iac_runner.job.settings import load_stack_file
from tests.helpers import check_report

ROOT = Path(__file__).resolve().parents[2]
STACK_SOURCE = ROOT / "stacks" / "s3-bucket" / "cloudformation"

REGION, ACCOUNT = "us-east-1", "123456789012"
NAME = "orders-bucket"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{NAME}/3b2f8f60-11f1-11ef-8d4a-0e8c3b9f1a27"
# The stack a failed first create left behind (deleted, then created again under a new id).
OLD_STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{NAME}/0d6e51a0-10a4-11ef-b6f2-12c7e1f4d9b3"
CHANGE_SET_NAME = "iac-runner-5f0c1e2d9a7b"
CHANGE_SET_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{CHANGE_SET_NAME}/8c1d2e3f-4a5b-4c6d-9e8f-0a1b2c3d4e5f"
)
TOKEN = "tok-7d1c9b2e4f"
TOKEN_PARAMETER = f"/iac-runner/{NAME}/api-token"
INPUTS = {"bucket": NAME, "environment": "production"}
PARAMETERS = [
    {"ParameterKey": "bucket", "ParameterValue": NAME},
    {"ParameterKey": "environment", "ParameterValue": "production"},
    {"ParameterKey": "apiToken", "ParameterValue": TOKEN},
]
RESOURCES = {  # logical id -> (type, physical id)
    "Bucket": ("AWS::S3::Bucket", NAME),
    "TokenParameter": ("AWS::SSM::Parameter", TOKEN_PARAMETER),
}
OUTPUTS = [
    {"OutputKey": "bucket", "OutputValue": NAME},
    {"OutputKey": "arn", "OutputValue": f"arn:aws:s3:::{NAME}"},
    {"OutputKey": "region", "OutputValue": REGION},
    {
        "OutputKey": "tokenParameter",
        "OutputValue": TOKEN_PARAMETER,
        "Description": "Name of the SSM parameter holding the token (secret - see iac-runner.yaml).",
    },
]
EXPECTED_OUTPUTS = [
    Output("bucket", NAME),
    Output("arn", f"arn:aws:s3:::{NAME}"),
    Output("region", REGION),
    Output("tokenParameter", TOKEN_PARAMETER, secret=True),
]
START = datetime(2024, 5, 14, 9, 21, 0, 123000, tzinfo=UTC)
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."
BUCKET_EXISTS = (
    f'Resource handler returned message: "{NAME} already exists (Service: S3, Status Code: 0, Request ID: null)" '
    "(RequestToken: 5b0d8a3e-7c1f-4e8e-a0f4-3c2b1d9e8f70, HandlerErrorCode: AlreadyExists)"
)
ACCESS_DENIED = (
    'Resource handler returned message: "Access Denied (Service: S3, Status Code: 403, Request ID: 9K2D7QX4M1PZ8E0A)" '
    "(RequestToken: 1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b, HandlerErrorCode: AccessDenied)"
)
NOT_EMPTY = (
    'Resource handler returned message: "The bucket you tried to delete is not empty (Service: S3, Status Code: 409, '
    'Request ID: 4V8H3N6T2K9J1C5B)" (RequestToken: 7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d, HandlerErrorCode: '
    "GeneralServiceException)"
)
CANCELLED = "Resource creation cancelled"
IN_PROGRESS, DONE = "IN_PROGRESS", "DONE"  # markers for readability of `Api.wait` steps


class RecordingStubber(Stubber):
    """A Stubber that also records its own assertion failures.

    The backend turns every botocore exception into a runner error, so an unexpected call would otherwise
    surface as an ordinary EngineError — which some tests expect. Recording lets each test fail on it.
    """

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.violations: list[str] = []

    # Overrides of Stubber's two checking hooks (private, unchanged since botocore 1.x; absent from its stubs).
    def _assert_expected_params(self, model: Any, params: Any, context: Any, **kwargs: Any) -> None:
        try:
            super()._assert_expected_params(model, params, context, **kwargs)  # type: ignore[misc]
        except StubResponseError as exc:
            self.violations.append(str(exc))
            raise

    def _get_response_handler(self, model: Any, params: Any, context: Any, **kwargs: Any) -> Any:
        try:
            return super()._get_response_handler(model, params, context, **kwargs)  # type: ignore[misc]
        except StubResponseError as exc:
            self.violations.append(str(exc))
            raise


class Deployed(str):
    """A TemplateBody that is the stack's template, with or without the fingerprint an apply adds for its next
    unchanged create (template.py)."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(str(self).rstrip("\n"))

    def __ne__(self, other: object) -> bool:
        return not self == other


class Api:
    """The stubbed CloudFormation API, plus each stack's event history (newest first, as AWS returns it)."""

    def __init__(self, stubber: RecordingStubber) -> None:
        self.stubber = stubber
        self.history: dict[str, list[dict[str, Any]]] = {}
        self._clock = itertools.count(1)

    # -- what happens in AWS ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return START + timedelta(seconds=next(self._clock), milliseconds=317)

    def happen(self, stack_id: str, *events: tuple[str, str, str | None]) -> list[dict[str, Any]]:
        """Stack events (logical id, status, reason), oldest first; a logical id of NAME is the stack itself."""
        made = []
        for logical, status, reason in events:
            at = self.now()
            if logical == NAME:
                kind, physical = "AWS::CloudFormation::Stack", stack_id
                event_id = f"{status.lower()}-{at:%H%M%S}-{len(self.history.get(stack_id, [])):04d}-9f1e-0affd2b5e4a1"
            else:
                kind, physical = RESOURCES[logical]
                if status == "CREATE_IN_PROGRESS" and reason is None:
                    physical = ""  # not known yet when the create starts
                event_id = f"{logical}-{status}-{at.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}"
            event: dict[str, Any] = {
                "StackId": stack_id,
                "EventId": event_id,
                "StackName": NAME,
                "LogicalResourceId": logical,
                "PhysicalResourceId": physical,
                "ResourceType": kind,
                "Timestamp": at,
                "ResourceStatus": status,
            }
            if reason is not None:
                event["ResourceStatusReason"] = reason
            self.history.setdefault(stack_id, []).insert(0, event)
            made.append(event)
        return made

    def stack(self, stack_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
        stack: dict[str, Any] = {
            "StackId": stack_id,
            "StackName": NAME,
            "ChangeSetId": CHANGE_SET_ID,
            "Description": "An S3 bucket with tags, and an API token kept in an SSM parameter.",
            "Parameters": [
                {"ParameterKey": "bucket", "ParameterValue": NAME},
                {"ParameterKey": "environment", "ParameterValue": "production"},
                {"ParameterKey": "versioning", "ParameterValue": "false"},
                {"ParameterKey": "apiToken", "ParameterValue": "****"},
            ],
            "CreationTime": START,
            "LastUpdatedTime": self.now(),
            "RollbackConfiguration": {},
            "StackStatus": status,
            "DisableRollback": False,
            "NotificationARNs": [],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            "Tags": [],
            "EnableTerminationProtection": False,
            "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
        }
        if reason:
            stack["StackStatusReason"] = reason
        if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE") or (
            status.startswith("UPDATE") and status.endswith("IN_PROGRESS")
        ):
            stack["Outputs"] = OUTPUTS
        if status == "DELETE_COMPLETE":
            stack["DeletionTime"] = self.now()
        return stack

    # -- what the backend is expected to ask, in order ------------------------------------------------------

    def describe(self, name_or_id: str, status: str, reason: str | None = None, stack_id: str = STACK_ID) -> None:
        response = {"Stacks": [self.stack(stack_id, status, reason)]}
        self.stubber.add_response("describe_stacks", response, {"StackName": name_or_id})

    def missing(self, name: str = NAME) -> None:
        self.stubber.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {name} does not exist",
            http_status_code=400,
            expected_params={"StackName": name},
        )

    def events(self, stack_id: str = STACK_ID) -> None:
        """One describe_stack_events call answered with the stack's whole history so far (one page)."""
        page = {"StackEvents": list(self.history.get(stack_id, []))}
        self.stubber.add_response("describe_stack_events", page, {"StackName": stack_id})

    def wait(self, stack_id: str, steps: Sequence[tuple[Sequence[tuple[str, str, str | None]], str]]) -> None:
        """The backend's wait loop: each step is (events that happened meanwhile, stack status it then reads).

        Per round the backend reads new events, then the stack; once the status is final it reads events once
        more (to catch the last ones) and stops.
        """
        for happened, status in steps:
            self.happen(stack_id, *happened)
            self.events(stack_id)
            self.describe(stack_id, status, stack_id=stack_id)
        self.events(stack_id)

    def create_change_set(self, kind: str, stack_id: str = STACK_ID, template: str = "") -> None:
        self.stubber.add_response(
            "create_change_set",
            {"Id": CHANGE_SET_ID, "StackId": stack_id},
            {
                "StackName": NAME,
                "ChangeSetName": ANY,
                "ChangeSetType": kind,
                "TemplateBody": Deployed(template),
                "Parameters": PARAMETERS,
                "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
                "Description": "created by iac-runner",
            },
        )

    def change_set(
        self,
        status: str,
        stack_id: str = STACK_ID,
        reason: str | None = None,
        changes: Sequence[dict[str, Any]] = (),
    ) -> None:
        execution = {"CREATE_COMPLETE": "AVAILABLE", "FAILED": "UNAVAILABLE"}.get(status, "UNAVAILABLE")
        response: dict[str, Any] = {
            "ChangeSetName": CHANGE_SET_NAME,
            "ChangeSetId": CHANGE_SET_ID,
            "StackId": stack_id,
            "StackName": NAME,
            "Description": "created by iac-runner",
            "Parameters": [
                {**p, "ParameterValue": "****"} if p["ParameterKey"] == "apiToken" else p for p in PARAMETERS
            ],
            "CreationTime": self.now(),
            "ExecutionStatus": execution,
            "Status": status,
            "NotificationARNs": [],
            "RollbackConfiguration": {},
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            "Changes": list(changes),
            "IncludeNestedStacks": False,
        }
        if reason is not None:
            response["StatusReason"] = reason
        self.stubber.add_response("describe_change_set", response, {"ChangeSetName": CHANGE_SET_ID})

    def ready_change_set(
        self, changes: Sequence[dict[str, Any]], stack_id: str = STACK_ID, executed: bool = True
    ) -> None:
        """The change set is polled until ready, listed (paginator), then, to execute it, read for its stack id."""
        self.change_set("CREATE_IN_PROGRESS", stack_id)
        self.change_set("CREATE_COMPLETE", stack_id, changes=changes)
        self.change_set("CREATE_COMPLETE", stack_id, changes=changes)
        if executed:
            self.change_set("CREATE_COMPLETE", stack_id, changes=changes)

    def template(self, body: str = "Resources: {}") -> None:
        """GetTemplate of the fast path: a deployed template without a fingerprint, so the full path follows."""
        response = {"TemplateBody": body, "StagesAvailable": ["Original", "Processed"]}
        self.stubber.add_response("get_template", response, {"StackName": NAME, "TemplateStage": "Original"})

    def execute(self) -> None:
        self.stubber.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET_ID})

    def delete_change_set(self) -> None:
        self.stubber.add_response("delete_change_set", {}, {"ChangeSetName": CHANGE_SET_ID})

    def delete_stack(self, stack_id: str = STACK_ID) -> None:
        self.stubber.add_response("delete_stack", {}, {"StackName": stack_id})

    def done(self) -> None:
        assert self.stubber.violations == [], "unexpected calls:\n" + "\n".join(self.stubber.violations)
        self.stubber.assert_no_pending_responses()


def change(logical: str, action: str) -> dict[str, Any]:
    kind, physical = RESOURCES[logical]
    resource: dict[str, Any] = {"Action": action, "LogicalResourceId": logical, "ResourceType": kind}
    if action == "Add":
        resource.update(Scope=[], Details=[])
    else:
        resource.update(
            PhysicalResourceId=physical,
            Replacement="False",
            Scope=["Tags"],
            Details=[
                {
                    "Target": {"Attribute": "Tags", "RequiresRecreation": "Never"},
                    "Evaluation": "Static",
                    "ChangeSource": "DirectModification",
                }
            ],
        )
    return {"Type": "Resource", "ResourceChange": resource}


CREATE_CHANGES = [change("Bucket", "Add"), change("TokenParameter", "Add")]
UPDATE_CHANGES = [change("Bucket", "Modify")]

# A first create that went well, as the stack's history shows it.
CREATED = [
    (NAME, "REVIEW_IN_PROGRESS", "User Initiated"),
    (NAME, "CREATE_IN_PROGRESS", "User Initiated"),
    ("Bucket", "CREATE_IN_PROGRESS", None),
    ("TokenParameter", "CREATE_IN_PROGRESS", None),
    ("TokenParameter", "CREATE_IN_PROGRESS", "Resource creation Initiated"),
    ("Bucket", "CREATE_IN_PROGRESS", "Resource creation Initiated"),
    ("TokenParameter", "CREATE_COMPLETE", None),
    ("Bucket", "CREATE_COMPLETE", None),
    (NAME, "CREATE_COMPLETE", None),
]


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    session = botocore.session.get_session()
    client = session.create_client(
        "cloudformation",
        region_name=REGION,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    stubber = RecordingStubber(client)
    monkeypatch.setattr(cloudformation.aws, "client", lambda: client)
    monkeypatch.setattr(cloudformation.aws, "POLL_FIRST", 0.001)
    monkeypatch.setattr(cloudformation.aws, "POLL_MAX", 0.005)
    with stubber:
        yield Api(stubber)


@pytest.fixture
def logged(logged: io.StringIO) -> Iterator[io.StringIO]:
    """The run's log; the secret input must never appear in it."""
    yield logged
    assert TOKEN not in logged.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "s3-bucket"
    shutil.copytree(STACK_SOURCE, folder)
    return folder


@pytest.fixture
def template(folder: Path) -> str:
    return (folder / "template.yaml").read_text(encoding="utf-8")


def context(folder: Path, deadline: Deadline | None = None) -> StackContext:
    return StackContext(
        folder=folder,
        stack_name=NAME,
        inputs=INPUTS,
        secret_inputs={"apiToken": TOKEN},
        stack_file=load_stack_file(folder),
        deadline=deadline or Deadline(60),
        work_dir=folder.parent / "work",
    )


@pytest.fixture
def ctx(folder: Path) -> StackContext:
    return context(folder)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def stack_events(stream: io.StringIO) -> list[tuple[str, str, str]]:
    """The stack events the backend logged, in log order (planned changes, 'will …', left out)."""
    return [
        (r["address"], r["status"], r.get("detail", ""))
        for r in records(stream)
        if r["event"] == "resource" and not r["status"].startswith("will ")
    ]


def expected(*events: tuple[str, str, str | None]) -> list[tuple[str, str, str]]:
    return [(logical, status, reason or "") for logical, status, reason in events]


def fails(call: Any, kind: type[RunnerError]) -> RunnerError:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


# -- 1. a failed first create is deleted and created again ----------------------------------------------------


def test_apply_on_rollback_complete_deletes_then_creates(
    api: Api, ctx: StackContext, template: str, logged: io.StringIO
) -> None:
    failed_create = [
        (NAME, "REVIEW_IN_PROGRESS", "User Initiated"),
        (NAME, "CREATE_IN_PROGRESS", "User Initiated"),
        ("Bucket", "CREATE_IN_PROGRESS", None),
        ("Bucket", "CREATE_FAILED", BUCKET_EXISTS),
        (
            NAME,
            "ROLLBACK_IN_PROGRESS",
            "The following resource(s) failed to create: [Bucket]. Rollback requested by user.",
        ),
        ("Bucket", "DELETE_COMPLETE", None),
        (NAME, "ROLLBACK_COMPLETE", None),
    ]
    api.happen(OLD_STACK_ID, *failed_create)
    api.describe(NAME, "ROLLBACK_COMPLETE", stack_id=OLD_STACK_ID)
    # delete the old stack and wait for it to be gone
    api.events(OLD_STACK_ID)
    api.delete_stack(OLD_STACK_ID)
    deleting = [(NAME, "DELETE_IN_PROGRESS", "User Initiated")]
    api.wait(
        OLD_STACK_ID,
        [(deleting, "DELETE_IN_PROGRESS"), ([(NAME, "DELETE_COMPLETE", None)], "DELETE_COMPLETE")],
    )
    # then a CREATE change set on the name, executed and waited for
    api.create_change_set("CREATE", template=template)
    api.happen(STACK_ID, (NAME, "REVIEW_IN_PROGRESS", "User Initiated"))
    api.ready_change_set(CREATE_CHANGES)
    api.events(STACK_ID)
    api.execute()
    api.wait(STACK_ID, [(CREATED[1:5], "CREATE_IN_PROGRESS"), (CREATED[5:], "CREATE_COMPLETE")])
    api.describe(NAME, "CREATE_COMPLETE")

    outputs = cloudformation.BACKEND.apply(ctx)

    assert outputs == EXPECTED_OUTPUTS
    api.done()
    lines = records(logged)
    assert any(
        r["level"] == "warning" and "ROLLBACK_COMPLETE" in r["message"] and "deleting it" in r["message"] for r in lines
    )
    # the failed create's old events are not replayed; the delete's and the create's are, in order
    assert stack_events(logged) == expected(*deleting, (NAME, "DELETE_COMPLETE", None), *CREATED[1:])


# -- 2, 3. states that block an update: a clear error and no other call ---------------------------------------


def test_apply_on_update_rollback_failed_says_continue_update_rollback(api: Api, ctx: StackContext) -> None:
    reason = "The following resource(s) failed to update: [Bucket]. "
    api.describe(NAME, "UPDATE_ROLLBACK_FAILED", reason=reason)

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()  # only the one describe_stacks: nothing was changed
    assert error.exit_code == ExitCode.ENGINE and int(error.exit_code) == 1
    assert "UPDATE_ROLLBACK_FAILED" in error.summary
    assert NAME in error.summary
    assert f"aws cloudformation continue-update-rollback --stack-name {NAME}" in error.fix
    assert "failed to update: [Bucket]" in error.where
    assert "continue-update-rollback" in error.render()


def test_apply_on_delete_failed_says_how_to_fix(api: Api, ctx: StackContext) -> None:
    api.describe(NAME, "DELETE_FAILED", reason="The following resource(s) failed to delete: [Bucket]. ")

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()
    assert int(error.exit_code) == 1
    assert "DELETE_FAILED" in error.summary
    assert "failed to delete: [Bucket]" in error.where
    assert "delete" in error.fix and NAME in error.fix and "run again" in error.fix


# -- 4, 5. asynchronous failures while the change set executes ------------------------------------------------


def test_create_that_rolls_back_reports_the_first_real_failure(
    api: Api, ctx: StackContext, template: str, logged: io.StringIO
) -> None:
    api.missing(NAME)
    api.create_change_set("CREATE", template=template)
    api.happen(STACK_ID, (NAME, "REVIEW_IN_PROGRESS", "User Initiated"))
    api.ready_change_set(CREATE_CHANGES)
    api.events(STACK_ID)
    api.execute()
    api.wait(
        STACK_ID,
        [
            (
                [
                    (NAME, "CREATE_IN_PROGRESS", "User Initiated"),
                    ("Bucket", "CREATE_IN_PROGRESS", None),
                    ("TokenParameter", "CREATE_IN_PROGRESS", None),
                ],
                "CREATE_IN_PROGRESS",
            ),
            (
                [
                    ("TokenParameter", "CREATE_IN_PROGRESS", "Resource creation Initiated"),
                    ("Bucket", "CREATE_FAILED", BUCKET_EXISTS),
                    ("TokenParameter", "CREATE_FAILED", CANCELLED),
                    (
                        NAME,
                        "ROLLBACK_IN_PROGRESS",
                        "The following resource(s) failed to create: [Bucket, TokenParameter]. "
                        "Rollback requested by user.",
                    ),
                ],
                "ROLLBACK_IN_PROGRESS",
            ),
            ([("TokenParameter", "DELETE_IN_PROGRESS", None)], "ROLLBACK_IN_PROGRESS"),
            (
                [
                    ("TokenParameter", "DELETE_COMPLETE", None),
                    ("Bucket", "DELETE_COMPLETE", None),
                    (NAME, "ROLLBACK_COMPLETE", None),
                ],
                "ROLLBACK_COMPLETE",
            ),
        ],
    )

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()  # no outputs read after the failure
    assert int(error.exit_code) == 1
    assert error.summary.startswith(f"Stack {NAME} could not be created: it ended in ROLLBACK_COMPLETE; Bucket failed")
    assert error.where == f"first failure: Bucket (AWS::S3::Bucket): {BUCKET_EXISTS}"
    assert "already exists" in error.details
    assert "cancelled" not in error.details.lower() and "cancelled" not in error.where.lower()
    assert "deleted and recreated on the next run" in error.fix
    # the cancelled event is still shown in the progress, just not blamed
    assert ("TokenParameter", "CREATE_FAILED", CANCELLED) in stack_events(logged)
    # the run report's structured error: the failing resource and CloudFormation's failed-resource event
    assert error.resource == "Bucket"
    document = RunReport("create", backend="cloudformation", stack=NAME).document(int(error.exit_code), error)
    check_report(document)
    assert document["error"]["resource"] == "Bucket"
    assert document["error"]["diagnostics"] == [{"severity": "error", "summary": BUCKET_EXISTS, "address": "Bucket"}]


def test_update_that_rolls_back_could_not_be_updated(api: Api, ctx: StackContext, template: str) -> None:
    api.happen(STACK_ID, *CREATED)
    api.describe(NAME, "UPDATE_COMPLETE")
    api.template()
    api.create_change_set("UPDATE", template=template)
    api.ready_change_set(UPDATE_CHANGES)
    api.events(STACK_ID)
    api.execute()
    api.wait(
        STACK_ID,
        [
            (
                [(NAME, "UPDATE_IN_PROGRESS", "User Initiated"), ("Bucket", "UPDATE_IN_PROGRESS", None)],
                "UPDATE_IN_PROGRESS",
            ),
            (
                [
                    ("Bucket", "UPDATE_FAILED", ACCESS_DENIED),
                    (NAME, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Bucket]. "),
                    ("Bucket", "UPDATE_IN_PROGRESS", None),
                    ("Bucket", "UPDATE_COMPLETE", None),
                    (NAME, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None),
                ],
                "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
            ),
            ([(NAME, "UPDATE_ROLLBACK_COMPLETE", None)], "UPDATE_ROLLBACK_COMPLETE"),
        ],
    )

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()
    assert int(error.exit_code) == 1
    assert error.summary.startswith(
        f"Stack {NAME} could not be updated: it ended in UPDATE_ROLLBACK_COMPLETE; Bucket failed"
    )
    assert error.resource == "Bucket"
    assert error.where == f"first failure: Bucket (AWS::S3::Bucket): {ACCESS_DENIED}"


# -- 6, 7. change sets that fail to be created -----------------------------------------------------------------


def test_no_changes_is_success_without_execute_and_the_empty_change_set_is_deleted(
    api: Api, ctx: StackContext, template: str, logged: io.StringIO
) -> None:
    api.describe(NAME, "UPDATE_COMPLETE")
    api.template()
    api.create_change_set("UPDATE", template=template)
    api.change_set("CREATE_PENDING")
    api.change_set("FAILED", reason=NO_CHANGES)
    api.delete_change_set()
    api.describe(NAME, "UPDATE_COMPLETE")

    outputs = cloudformation.BACKEND.apply(ctx)

    api.done()  # no execute_change_set, no stack events
    assert outputs == EXPECTED_OUTPUTS
    assert any("up to date" in r["message"] for r in records(logged))


def test_change_set_failed_for_another_reason_names_it(api: Api, ctx: StackContext, template: str) -> None:
    reason = "Template format error: Unresolved resource dependencies [Queue] in the Resources block of the template"
    api.describe(NAME, "CREATE_COMPLETE")
    api.template()
    api.create_change_set("UPDATE", template=template)
    api.change_set("CREATE_IN_PROGRESS")
    api.change_set("FAILED", reason=reason)
    api.delete_change_set()  # a rejected change set is not left behind

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()  # never executed
    assert int(error.exit_code) == 1
    assert reason in error.summary
    assert "nothing was changed" in error.fix


def test_rejected_first_create_leaves_no_empty_stack(api: Api, ctx: StackContext, template: str) -> None:
    api.missing()
    api.create_change_set("CREATE", template=template)
    api.change_set("FAILED", reason="Template error: something the linter did not catch")
    api.delete_change_set()
    api.delete_stack(NAME)

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), EngineError)

    api.done()
    assert "something the linter did not catch" in error.summary


# -- 8. an operation already running is waited for --------------------------------------------------------------


def test_apply_waits_for_a_running_update_then_proceeds(
    api: Api, ctx: StackContext, template: str, logged: io.StringIO
) -> None:
    api.happen(STACK_ID, *CREATED)
    api.happen(STACK_ID, (NAME, "UPDATE_IN_PROGRESS", "User Initiated"), ("Bucket", "UPDATE_IN_PROGRESS", None))
    api.describe(NAME, "UPDATE_IN_PROGRESS")
    api.events(STACK_ID)  # what had happened before the runner came is not replayed
    api.wait(
        STACK_ID,
        [
            ([], "UPDATE_IN_PROGRESS"),
            ([("Bucket", "UPDATE_COMPLETE", None)], "UPDATE_IN_PROGRESS"),
            ([(NAME, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None)], "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            ([(NAME, "UPDATE_COMPLETE", None)], "UPDATE_COMPLETE"),
        ],
    )
    api.describe(NAME, "UPDATE_COMPLETE")
    api.template()
    # then it proceeds: an UPDATE change set (with nothing left to change here)
    api.create_change_set("UPDATE", template=template)
    api.change_set("FAILED", reason=NO_CHANGES)
    api.delete_change_set()
    api.describe(NAME, "UPDATE_COMPLETE")

    outputs = cloudformation.BACKEND.apply(ctx)

    api.done()
    assert outputs == EXPECTED_OUTPUTS
    assert any("UPDATE_IN_PROGRESS: waiting" in r["message"] for r in records(logged))
    assert stack_events(logged) == expected(
        ("Bucket", "UPDATE_COMPLETE", None),
        (NAME, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None),
        (NAME, "UPDATE_COMPLETE", None),
    )


# -- 9. destroy ----------------------------------------------------------------------------------------------------


def test_destroy_of_a_missing_stack_succeeds_without_deleting(api: Api, ctx: StackContext) -> None:
    api.missing(NAME)

    cloudformation.BACKEND.destroy(ctx)

    api.done()  # no delete_stack


def test_destroy_deletes_and_waits(api: Api, ctx: StackContext) -> None:
    api.happen(STACK_ID, *CREATED)
    api.describe(NAME, "CREATE_COMPLETE")
    api.events(STACK_ID)
    api.delete_stack(STACK_ID)
    api.wait(
        STACK_ID,
        [
            ([(NAME, "DELETE_IN_PROGRESS", "User Initiated")], "DELETE_IN_PROGRESS"),
            (
                [
                    ("TokenParameter", "DELETE_IN_PROGRESS", None),
                    ("Bucket", "DELETE_IN_PROGRESS", None),
                    ("TokenParameter", "DELETE_COMPLETE", None),
                    ("Bucket", "DELETE_COMPLETE", None),
                    (NAME, "DELETE_COMPLETE", None),
                ],
                "DELETE_COMPLETE",
            ),
        ],
    )

    cloudformation.BACKEND.destroy(ctx)

    api.done()


def test_destroy_that_ends_delete_failed_names_the_resource(api: Api, ctx: StackContext) -> None:
    api.happen(STACK_ID, *CREATED)
    api.describe(NAME, "CREATE_COMPLETE")
    api.events(STACK_ID)
    api.delete_stack(STACK_ID)
    api.wait(
        STACK_ID,
        [
            (
                [
                    (NAME, "DELETE_IN_PROGRESS", "User Initiated"),
                    ("TokenParameter", "DELETE_IN_PROGRESS", None),
                    ("Bucket", "DELETE_IN_PROGRESS", None),
                    ("TokenParameter", "DELETE_COMPLETE", None),
                ],
                "DELETE_IN_PROGRESS",
            ),
            (
                [
                    ("Bucket", "DELETE_FAILED", NOT_EMPTY),
                    (NAME, "DELETE_FAILED", "The following resource(s) failed to delete: [Bucket]. "),
                ],
                "DELETE_FAILED",
            ),
        ],
    )

    error = fails(lambda: cloudformation.BACKEND.destroy(ctx), EngineError)

    api.done()
    assert int(error.exit_code) == 1
    assert error.summary.startswith(f"Stack {NAME} could not be deleted: it ended in DELETE_FAILED; Bucket failed")
    assert error.where == f"first failure: Bucket (AWS::S3::Bucket): {NOT_EMPTY}"
    # a failed delete is fixed by removing what blocks it and destroying again, not by editing the template
    assert "destroy" in error.fix
    assert "template" not in error.fix


# -- 10. credentials and the deadline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rejection",
    [
        ("ExpiredToken", "The security token included in the request is expired", 400),
        ("InvalidClientTokenId", "The security token included in the request is invalid.", 403),
    ],
)
@pytest.mark.parametrize("verb", ["apply", "destroy"])
def test_rejected_credentials_are_a_config_error(
    api: Api, ctx: StackContext, rejection: tuple[str, str, int], verb: str
) -> None:
    code, message, status = rejection
    api.stubber.add_client_error(
        "describe_stacks",
        service_error_code=code,
        service_message=message,
        http_status_code=status,
        expected_params={"StackName": NAME},
    )

    error = fails(lambda: getattr(cloudformation.BACKEND, verb)(ctx), ConfigError)

    api.done()
    assert error.exit_code == ExitCode.CONFIG and int(error.exit_code) == 2
    assert message in error.summary
    assert code in error.where
    assert "credentials" in error.fix


def test_a_running_operation_that_outlasts_the_deadline_times_out(
    api: Api, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polls far apart: the first sleep is cut to what is left of the deadline, then the run times out.
    monkeypatch.setattr(cloudformation.aws, "POLL_FIRST", 30.0)
    monkeypatch.setattr(cloudformation.aws, "POLL_MAX", 30.0)
    api.happen(STACK_ID, *CREATED, (NAME, "DELETE_IN_PROGRESS", "User Initiated"))
    api.describe(NAME, "DELETE_IN_PROGRESS")
    api.events(STACK_ID)
    api.events(STACK_ID)
    api.describe(STACK_ID, "DELETE_IN_PROGRESS")
    ctx = context(folder, Deadline(0.5))

    started = time.monotonic()
    error = fails(lambda: cloudformation.BACKEND.destroy(ctx), RunTimeout)

    api.done()
    assert time.monotonic() - started < 5
    assert error.exit_code == ExitCode.TIMEOUT and int(error.exit_code) == 3
    assert "0.5 s" in error.summary and "running operation" in error.summary


def test_an_execution_that_outlasts_the_deadline_times_out(
    api: Api, folder: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloudformation.aws, "POLL_FIRST", 30.0)
    monkeypatch.setattr(cloudformation.aws, "POLL_MAX", 30.0)
    api.happen(STACK_ID, *CREATED)
    api.describe(NAME, "CREATE_COMPLETE")
    api.template()
    api.create_change_set("UPDATE", template=template)
    api.change_set("CREATE_COMPLETE", changes=UPDATE_CHANGES)
    api.change_set("CREATE_COMPLETE", changes=UPDATE_CHANGES)
    api.change_set("CREATE_COMPLETE", changes=UPDATE_CHANGES)
    api.events(STACK_ID)
    api.execute()
    api.happen(STACK_ID, (NAME, "UPDATE_IN_PROGRESS", "User Initiated"))
    api.events(STACK_ID)
    api.describe(STACK_ID, "UPDATE_IN_PROGRESS")
    ctx = context(folder, Deadline(1.0))

    error = fails(lambda: cloudformation.BACKEND.apply(ctx), RunTimeout)

    api.done()
    assert int(error.exit_code) == 3
    assert f"update of stack {NAME}" in error.summary
    assert "IAC_RUNNER_TIMEOUT" in error.fix


# -- 11. events are streamed oldest first, each once ---------------------------------------------------------


def test_events_are_logged_oldest_first_and_each_once(
    api: Api, ctx: StackContext, template: str, logged: io.StringIO
) -> None:
    api.happen(STACK_ID, *CREATED)
    api.describe(NAME, "UPDATE_COMPLETE")
    api.template()
    api.create_change_set("UPDATE", template=template)
    api.ready_change_set([change("Bucket", "Modify"), change("TokenParameter", "Modify")])
    api.events(STACK_ID)  # the history before the update: marked as seen, never logged
    api.execute()
    # round 1: two new events on top of the history
    first = [(NAME, "UPDATE_IN_PROGRESS", "User Initiated"), ("Bucket", "UPDATE_IN_PROGRESS", None)]
    api.happen(STACK_ID, *first)
    api.events(STACK_ID)
    api.describe(STACK_ID, "UPDATE_IN_PROGRESS")
    # round 2: nothing new
    api.events(STACK_ID)
    api.describe(STACK_ID, "UPDATE_IN_PROGRESS")
    # round 3: four new events spread over two pages; the second page reaches seen events, so no third page
    second = [
        ("Bucket", "UPDATE_COMPLETE", None),
        ("TokenParameter", "UPDATE_IN_PROGRESS", None),
        ("TokenParameter", "UPDATE_COMPLETE", None),
        (NAME, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None),
    ]
    api.happen(STACK_ID, *second)
    history = api.history[STACK_ID]
    api.stubber.add_response(
        "describe_stack_events",
        {"StackEvents": history[:3], "NextToken": "eyJwYWdlIjoyfQ=="},
        {"StackName": STACK_ID},
    )
    api.stubber.add_response(
        "describe_stack_events",
        {"StackEvents": history[3:8], "NextToken": "eyJwYWdlIjozfQ=="},
        {"StackName": STACK_ID, "NextToken": "eyJwYWdlIjoyfQ=="},
    )
    api.describe(STACK_ID, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    # round 4: the last event; then one more read that finds nothing new
    last = [(NAME, "UPDATE_COMPLETE", None)]
    api.wait(STACK_ID, [(last, "UPDATE_COMPLETE")])
    api.describe(NAME, "UPDATE_COMPLETE")

    outputs = cloudformation.BACKEND.apply(ctx)

    api.done()
    assert outputs == EXPECTED_OUTPUTS
    logged_events = stack_events(logged)
    assert logged_events == expected(*first, *second, *last)
    assert len(logged_events) == len(set(logged_events))
    resource_lines = [r for r in records(logged) if r["event"] == "resource"]
    # the planned changes come first, then the progress; every record carries the resource type
    assert [r["status"] for r in resource_lines[:2]] == ["will change", "will change"]
    assert all(r["type"] for r in resource_lines)


# -- plan on the same states: the preview must agree with what apply would do ----------------------------------


def test_plan_on_update_rollback_failed_is_the_same_clear_error(api: Api, ctx: StackContext) -> None:
    api.describe(NAME, "UPDATE_ROLLBACK_FAILED", reason="The following resource(s) failed to update: [Bucket]. ")

    error = fails(lambda: cloudformation.BACKEND.plan(ctx), EngineError)

    api.done()  # no change set: CloudFormation would refuse it with a message that says nothing of the fix
    assert "UPDATE_ROLLBACK_FAILED" in error.summary
    assert "continue-update-rollback" in error.fix


def test_plan_on_rollback_complete_previews_the_recreate_without_touching_the_stack(
    api: Api, ctx: StackContext, logged: io.StringIO
) -> None:
    api.describe(NAME, "ROLLBACK_COMPLETE", stack_id=OLD_STACK_ID)

    summary = cloudformation.BACKEND.plan(ctx)

    api.done()  # no delete, no change set
    assert [(c.address, c.action, c.type) for c in summary.changes] == [
        ("Bucket", "add", "AWS::S3::Bucket"),
        ("TokenParameter", "add", "AWS::SSM::Parameter"),
    ]
    assert str(summary) == "2 to add, 0 to change, 0 to remove"
    assert any(r["level"] == "warning" and "ROLLBACK_COMPLETE" in r["message"] for r in records(logged))


def test_plan_of_an_update_discards_its_change_set_and_keeps_the_stack(
    api: Api, ctx: StackContext, template: str
) -> None:
    api.describe(NAME, "UPDATE_COMPLETE")
    api.create_change_set("UPDATE", template=template)
    api.ready_change_set(UPDATE_CHANGES, executed=False)
    api.delete_change_set()

    summary = cloudformation.BACKEND.plan(ctx)

    api.done()  # delete_change_set only: the existing stack is not deleted
    assert [(c.address, c.action) for c in summary.changes] == [("Bucket", "change")]


# -- drift: moto does not implement DetectStackDrift / DescribeStackResourceDrifts ---------------------------------

DETECTION_ID = "b78ac9b0-dec1-11e7-a451-503a3c8c00c5"
TAGS = [{"Key": "environment", "Value": "production"}, {"Key": "managed-by", "Value": "iac-runner"}]
EXPECTED_BUCKET = {"BucketName": NAME, "Tags": TAGS, "VersioningConfiguration": {"Status": "Suspended"}}
EXPECTED_PARAMETER = {"Name": TOKEN_PARAMETER, "Type": "String", "Value": "****",
                      "Description": "API token of the bucket's workload."}  # fmt: skip


def detection(api: Api, statuses: Sequence[str], drifted: int, reason: str = "") -> None:
    """DetectStackDrift, then its status polled until it is no longer in progress."""
    api.stubber.add_response("detect_stack_drift", {"StackDriftDetectionId": DETECTION_ID}, {"StackName": NAME})
    for status in statuses:
        response: dict[str, Any] = {
            "StackId": STACK_ID,
            "StackDriftDetectionId": DETECTION_ID,
            "DetectionStatus": status,
            "Timestamp": api.now(),
        }
        if status != "DETECTION_IN_PROGRESS":
            response.update(StackDriftStatus="DRIFTED" if drifted else "IN_SYNC", DriftedStackResourceCount=drifted)
        if reason:
            response["DetectionStatusReason"] = reason
        api.stubber.add_response(
            "describe_stack_drift_detection_status", response, {"StackDriftDetectionId": DETECTION_ID}
        )


def resource_drifts(api: Api, *pages: Sequence[dict[str, Any]]) -> None:
    """DescribeStackResourceDrifts, filtered to the drifted, one call per page."""
    for index, page in enumerate(pages):
        asked: dict[str, Any] = {"StackName": NAME, "StackResourceDriftStatusFilters": ["MODIFIED", "DELETED"]}
        if index:
            asked["NextToken"] = f"page-{index}"
        response: dict[str, Any] = {"StackResourceDrifts": list(page)}
        if index + 1 < len(pages):
            response["NextToken"] = f"page-{index + 1}"
        api.stubber.add_response("describe_stack_resource_drifts", response, asked)


def resource_drift(api: Api, logical: str, status: str, expected: dict[str, Any], **actual: Any) -> dict[str, Any]:
    kind, physical = RESOURCES[logical]
    drift: dict[str, Any] = {
        "StackId": STACK_ID,
        "LogicalResourceId": logical,
        "PhysicalResourceId": physical,
        "ResourceType": kind,
        "ExpectedProperties": json.dumps(expected),
        "StackResourceDriftStatus": status,
        "Timestamp": api.now(),
    }
    if status == "MODIFIED":
        drift["ActualProperties"] = json.dumps({**expected, **actual})
        drift["PropertyDifferences"] = [
            {"PropertyPath": "/Tags/0/Value", "ExpectedValue": "production", "ActualValue": "hacked",
             "DifferenceType": "NOT_EQUAL"},
            {"PropertyPath": "/VersioningConfiguration/Status", "ExpectedValue": "Suspended",
             "ActualValue": "Enabled", "DifferenceType": "NOT_EQUAL"},
        ]  # fmt: skip
    return drift


def test_drift_names_the_modified_properties_and_the_deleted_resource(
    api: Api, ctx: StackContext, logged: io.StringIO
) -> None:
    hacked = [{"Key": "environment", "Value": "hacked"}, TAGS[1]]
    api.describe(NAME, "UPDATE_COMPLETE")
    detection(api, ["DETECTION_IN_PROGRESS", "DETECTION_COMPLETE"], drifted=2)
    resource_drifts(
        api,
        [resource_drift(api, "Bucket", "MODIFIED", EXPECTED_BUCKET, Tags=hacked,
                        VersioningConfiguration={"Status": "Enabled"})],
        [resource_drift(api, "TokenParameter", "DELETED", EXPECTED_PARAMETER)],
    )  # fmt: skip

    found = cloudformation.BACKEND.drift(ctx)

    api.done()
    assert found == Drift(
        (
            DriftedResource("Bucket", "AWS::S3::Bucket", ("Tags/0/Value", "VersioningConfiguration/Status")),
            DriftedResource("TokenParameter", "AWS::SSM::Parameter", (), deleted=True),
        )
    )
    assert [(address, status, detail) for address, status, detail in stack_events(logged)] == [
        ("Bucket", "drifted", "changed: Tags/0/Value, VersioningConfiguration/Status"),
        ("TokenParameter", "drifted", "deleted"),
    ]


def test_drift_of_a_stack_in_sync_is_none(api: Api, ctx: StackContext) -> None:
    api.describe(NAME, "CREATE_COMPLETE")
    detection(api, ["DETECTION_COMPLETE"], drifted=0)
    resource_drifts(api, [])

    assert cloudformation.BACKEND.drift(ctx) == Drift()
    api.done()


def test_a_partial_detection_warns_and_reports_what_it_found(api: Api, ctx: StackContext, logged: io.StringIO) -> None:
    reason = "Failed to detect drift on resource [TokenParameter]: Access Denied"
    api.describe(NAME, "UPDATE_COMPLETE")
    detection(api, ["DETECTION_FAILED"], drifted=1, reason=reason)
    resource_drifts(api, [resource_drift(api, "Bucket", "MODIFIED", EXPECTED_BUCKET, Tags=[])])

    found = cloudformation.BACKEND.drift(ctx)

    api.done()
    assert [r.address for r in found.resources] == ["Bucket"]
    assert any(r["level"] == "warning" and reason in r["message"] for r in records(logged))


def test_drift_of_a_missing_stack_says_to_create_it(api: Api, ctx: StackContext) -> None:
    api.missing(NAME)

    error = fails(lambda: cloudformation.BACKEND.drift(ctx), EngineError)

    api.done()  # no drift detection started
    assert "does not exist, so it cannot drift" in error.summary and "Apply the stack first" in error.fix
