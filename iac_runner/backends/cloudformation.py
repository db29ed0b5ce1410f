"""AWS CloudFormation through boto3: change sets for create and update, stack events as progress.

CloudFormation keeps its own state (the stack), so this backend needs no state URL. The same code runs
against real AWS and moto: boto3 honours AWS_ENDPOINT_URL and the standard AWS_* variables.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from iac_runner.backends.base import (
    BackendDefaults,
    ChangeSummary,
    Declared,
    EngineUnavailable,
    InputSpec,
    Output,
    ResourceChange,
    StackContext,
    StackFile,
)
from iac_runner.common.errors import ConfigError, EngineError
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

TEMPLATE_NAMES = ("template.yaml", "template.yml", "template.json")
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]

# Polling: start fast so short operations finish fast, back off while nothing happens.
POLL_FIRST = 0.5
POLL_MAX = 5.0

UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
             "IMPORT_ROLLBACK_COMPLETE"}  # fmt: skip
# A first create that failed leaves a stack that can only be deleted; an operator deletes and recreates it.
FAILED_CREATE = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"}
NO_CHANGES = ("didn't contain changes", "no updates are to be performed", "no changes")


class _NoTagLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML for detection only: intrinsic function tags (!Ref, !Sub) become None."""


_NoTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _client() -> CloudFormationClient:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(
            "cloudformation",
            region_name=_region(),
            config=Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )
    except NoRegionError:
        raise ConfigError(
            "No AWS region is set for CloudFormation.",
            where="environment (AWS_REGION / AWS_DEFAULT_REGION)",
            fix="Set AWS_REGION, e.g. AWS_REGION=us-east-1.",
        ) from None


_CREDENTIAL_CODES = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
                     "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException", "AuthFailure"}  # fmt: skip


@contextlib.contextmanager
def _aws_errors(doing: str) -> Iterator[None]:
    """botocore's exceptions become the runner's: credentials and endpoints are configuration (exit 2)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    try:
        yield
    except NoCredentialsError:
        raise ConfigError(
            f"No AWS credentials were found while {doing}.",
            where="environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)",
            fix="Map the cloud account's credentials into the job (credentials_config) or set AWS_PROFILE.",
        ) from None
    except EndpointConnectionError as exc:
        raise ConfigError(
            f"The AWS endpoint could not be reached while {doing}.",
            where=str(exc.kwargs.get("endpoint_url", "")),
            fix="Check AWS_ENDPOINT_URL / AWS_REGION and the network path to AWS.",
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", str(exc))
        if code in _CREDENTIAL_CODES:
            raise ConfigError(
                f"AWS rejected the credentials while {doing}: {message}",
                where=f"AWS error {code}",
                fix="Check the credentials mapped into the job and that they may use CloudFormation.",
            ) from None
        raise EngineError(f"CloudFormation failed while {doing}: {message}", where=f"AWS error {code}") from None
    except BotoCoreError as exc:
        raise EngineError(f"The AWS SDK failed while {doing}: {exc}") from None


@dataclass(frozen=True)
class Template:
    path: Path
    body: str
    data: dict[str, Any]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("Parameters") or {})

    @property
    def output_names(self) -> list[str]:
        return list(self.data.get("Outputs") or {})


def find_template(folder: Path, configured: str | None) -> Path | None:
    if configured:
        return folder / configured
    for name in TEMPLATE_NAMES:
        path = folder / name
        if path.is_file():
            try:
                data = yaml.load(path.read_text(), Loader=_NoTagLoader)  # noqa: S506 - SafeLoader subclass
            except yaml.YAMLError:
                return path  # a broken template is still this backend's; validate says what is wrong
            if isinstance(data, dict) and "Resources" in data:
                return path
    return None


def load_template(ctx: StackContext) -> Template:
    from cfnlint.decode import decode_str

    path = find_template(ctx.folder, ctx.stack_file.template)
    if path is None or not path.is_file():
        wanted = ctx.stack_file.template or " / ".join(TEMPLATE_NAMES)
        raise ConfigError(
            f"The CloudFormation template {wanted} was not found in the stack folder.",
            where=str(ctx.folder),
            fix="Add the template, or name it with `template:` in iac-runner.yaml.",
        )
    body = path.read_text(encoding="utf-8")
    data, problems = decode_str(body)
    if problems or not isinstance(data, dict):
        raise _lint_error(path, problems, "cannot be parsed")
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise ConfigError(
            f"The template is {len(body.encode()):,} bytes, over CloudFormation's inline limit of "
            f"{TEMPLATE_BODY_LIMIT:,} bytes.",
            where=str(path),
            fix="Split it into nested stacks or shorten it (templates from S3 URLs are not supported yet).",
        )
    return Template(path=path, body=body, data=dict(data))


def _lint_error(path: Path, matches: list[Any], what: str) -> ConfigError:
    lines = [f"{path.name}:{m.linenumber}:{m.columnnumber} {m.rule.id} {m.message}" for m in matches[:10]]
    more = f"\n(and {len(matches) - 10} more)" if len(matches) > 10 else ""
    return ConfigError(
        f"The CloudFormation template {what}: {len(matches)} error(s) found by cfn-lint.",
        where=lines[0] if lines else str(path),
        fix="Fix the template at the lines shown; run `iac-runner validate` to check again.",
        details="\n".join(lines) + more,
    )


def parameters(template: Template, ctx: StackContext) -> list[dict[str, str]]:
    """The inputs as CloudFormation parameters, checked against what the template declares."""
    declared = template.parameters
    listing = ", ".join(f"{name} ({spec.get('Type', '?')})" for name, spec in declared.items()) or "none"
    unknown = [name for name in ctx.all_inputs if name not in declared]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        raise ConfigError(
            f"Input {unknown[0]!r} is not a parameter of the template"
            + (f" (did you mean {close[0]!r}?)." if close else "."),
            where=f"{template.path.name}: declared parameters: {listing}",
            fix="Remove the input or declare it under Parameters in the template.",
        )
    missing = [name for name, spec in declared.items() if "Default" not in spec and name not in ctx.all_inputs]
    if missing:
        raise ConfigError(
            f"Required parameter {missing[0]!r} has no input value"
            + (f" (also missing: {', '.join(missing[1:])})." if missing[1:] else "."),
            where=f"{template.path.name}: declared parameters: {listing}",
            fix="Add it to the resource inputs, or give the parameter a Default in the template.",
        )
    for name in ctx.secret_inputs:
        problem = _secret_parameter_problem(name, _is_no_echo(declared[name]))
        if problem:
            raise ConfigError(problem[0], where=f"{template.path.name}: Parameters.{name}", fix=problem[1])
    return [
        {"ParameterKey": name, "ParameterValue": _parameter_value(name, value, declared[name].get("Type", "String"))}
        for name, value in ctx.all_inputs.items()
    ]


def _parameter_value(name: str, value: Any, kind: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if not (kind.startswith("List<") or kind == "CommaDelimitedList"):
            raise ConfigError(
                f"Input {name!r} is a list but parameter {name} has type {kind}.",
                where=f"Parameters.{name}",
                fix="Declare it as CommaDelimitedList or List<...>, or pass a single value.",
            )
        return ",".join(_parameter_value(name, item, "String") for item in value)
    if isinstance(value, dict) or value is None:
        raise ConfigError(
            f"Input {name!r} is {'null' if value is None else 'an object'}; CloudFormation parameters are strings.",
            where=f"Parameters.{name}",
            fix="Pass a string, number, boolean or list (a JSON document can be passed as a string).",
        )
    return str(value)


class _Events:
    """Streams a stack's events as they arrive, oldest first, each once."""

    def __init__(self, cfn: CloudFormationClient, stack_id: str) -> None:
        self.cfn = cfn
        self.stack_id = stack_id
        self.seen: set[str] = set()
        self.failures: list[str] = []

    def mark_existing(self) -> None:
        with _aws_errors("reading stack events"):
            for event in self.cfn.describe_stack_events(StackName=self.stack_id).get("StackEvents", []):
                self.seen.add(event["EventId"])

    def poll(self) -> int:
        fresh = []
        with _aws_errors("reading stack events"):
            for page in self.cfn.get_paginator("describe_stack_events").paginate(StackName=self.stack_id):
                events = page.get("StackEvents", [])
                new = [e for e in events if e["EventId"] not in self.seen]
                fresh.extend(new)
                if len(new) < len(events):
                    break
        for event in reversed(fresh):
            self.seen.add(event["EventId"])
            status = event.get("ResourceStatus", "")
            reason = event.get("ResourceStatusReason", "")
            log.resource(event.get("LogicalResourceId", "?"), status, reason, type=event.get("ResourceType", ""))
            if status.endswith("FAILED") and reason and "cancelled" not in reason.lower():
                self.failures.append(f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}): {reason}")
        return len(fresh)


def _is_no_echo(spec: Mapping[str, Any]) -> bool:
    return str(spec.get("NoEcho", "false")).lower() == "true"


def _secret_parameter_problem(name: str, no_echo: bool) -> tuple[str, str] | None:
    if no_echo:
        return None
    return (
        f"Secret input {name!r} maps to a CloudFormation parameter without NoEcho: true, so CloudFormation would "
        "show its value",
        f"Add `NoEcho: true` to parameter {name}, or pass the input as a plain input.",
    )


class CloudFormationBackend(BackendDefaults):
    name = "cloudformation"

    def detect(self, folder: Path) -> str | None:
        path = find_template(folder, None)
        return path.name if path else None

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        path = find_template(folder, stack_file.template)
        if path is None or not path.is_file():
            return {}, False
        try:
            data = yaml.load(path.read_text(), Loader=_NoTagLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            return {}, False
        specs = (data.get("Parameters") if isinstance(data, dict) else None) or {}
        return {
            name: InputSpec("Default" not in spec, _is_no_echo(spec))
            for name, spec in specs.items()
            if isinstance(spec, dict)
        }, True

    def secret_input_problem(self, name: str, spec: InputSpec) -> tuple[str, str] | None:
        return _secret_parameter_problem(name, spec.secret)

    def needs_state(self, folder: Path | None) -> bool:
        return False  # the stack itself, in AWS, is the state

    def engine_version(self) -> str:
        try:
            import boto3
            import cfnlint.version
        except ImportError as exc:  # pragma: no cover - both are dependencies of the package
            raise EngineUnavailable(f"{exc.name} is not installed") from None
        return f"CloudFormation API (boto3 {boto3.__version__}, cfn-lint {cfnlint.version.__version__})"

    def stack_name(self, ctx: StackContext) -> str:
        return sanitize(ctx.stack_name, allowed="a-zA-Z0-9-", max_length=128)

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        self._validated(ctx)

    def _validated(self, ctx: StackContext) -> Template:
        """The template, once cfn-lint and the inputs have passed: before anything reaches AWS."""
        from cfnlint.api import lint

        log.step("validating the template (cfn-lint) and the inputs")
        template = load_template(ctx)
        matches = lint(template.body, regions=[_region() or "us-east-1"])
        for match in (m for m in matches if m.rule.id.startswith("W")):
            log.warning(f"{template.path.name}:{match.linenumber} {match.rule.id} {match.message}")
        errors = [m for m in matches if m.rule.id.startswith("E")]
        if errors:
            raise _lint_error(template.path, errors, "is invalid")
        parameters(template, ctx)
        unknown = [n for n in ctx.stack_file.secret_outputs if n not in template.output_names]
        if unknown:
            raise ConfigError(
                f"secret_outputs names {unknown[0]!r}, which is not an output of the template.",
                where=f"iac-runner.yaml; template outputs: {', '.join(template.output_names) or 'none'}",
                fix="Correct the name in secret_outputs.",
            )
        log.info(f"{template.path.name} is valid ({len(template.data.get('Resources', {}))} resources)")
        return template

    def plan(self, ctx: StackContext) -> ChangeSummary:
        template = self._validated(ctx)
        cfn, name = _client(), self.stack_name(ctx)
        stack = self._settled_stack(cfn, ctx, name)
        if stack and stack["StackStatus"] in FAILED_CREATE:
            # apply deletes this stack and creates it again: every resource of the template is added.
            log.warning(
                f"stack {name} is in {stack['StackStatus']} after a failed first create; "
                "apply will delete it and create it again"
            )
            resources = (template.data.get("Resources") or {}).items()
            adds = (ResourceChange(n, "add", str(r.get("Type", ""))) for n, r in resources if isinstance(r, dict))
            return ChangeSummary(tuple(adds))
        kind = _change_set_type(name, stack)
        change_set = self._create_change_set(cfn, ctx, name, template, kind)
        try:
            changes = self._changes(cfn, change_set) if change_set else ()
        finally:
            if change_set:
                self._discard(cfn, name, change_set, kind)
        summary = ChangeSummary(tuple(changes))
        for change in summary.changes:
            log.resource(change.address, f"will {change.action}", type=change.type)
        log.info(f"plan: {summary}")
        return summary

    def apply(self, ctx: StackContext) -> list[Output]:
        template = self._validated(ctx)
        cfn, name = _client(), self.stack_name(ctx)
        stack = self._settled_stack(cfn, ctx, name)
        if stack and stack["StackStatus"] in FAILED_CREATE:
            log.warning(
                f"stack {name} is in {stack['StackStatus']} after a failed first create; "
                "deleting it so it can be created again"
            )
            self._delete(cfn, ctx, stack["StackId"])
            stack = None
        kind = _change_set_type(name, stack)
        log.step(f"{'updating' if kind == 'UPDATE' else 'creating'} stack {name} with a change set")
        change_set = self._create_change_set(cfn, ctx, name, template, kind)
        if change_set is None:
            log.info(f"stack {name} is up to date: no changes")
        else:
            for change in self._changes(cfn, change_set):
                log.resource(change.address, f"will {change.action}", type=change.type)
            self._execute(cfn, ctx, name, change_set, kind)
        return self.outputs(ctx)

    def destroy(self, ctx: StackContext) -> None:
        cfn, name = _client(), self.stack_name(ctx)
        stack = self._settled_stack(cfn, ctx, name)
        if stack is None:
            log.info(f"stack {name} does not exist: nothing to destroy")
            return
        log.step(f"deleting stack {name}")
        self._delete(cfn, ctx, stack["StackId"])

    def outputs(self, ctx: StackContext) -> list[Output]:
        cfn, name = _client(), self.stack_name(ctx)
        stack = _describe(cfn, name)
        if stack is None or stack["StackStatus"] == "REVIEW_IN_PROGRESS":
            raise EngineError(
                f"Stack {name} does not exist, so it has no outputs.",
                where=f"CloudFormation stack {name} in region {_region()}",
                fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
            )
        secret = set(ctx.stack_file.secret_outputs)
        return [
            Output(o["OutputKey"], o.get("OutputValue", ""), secret=o["OutputKey"] in secret)
            for o in stack.get("Outputs", [])
        ]

    # -- steps -------------------------------------------------------------------------------------------

    def _settled_stack(self, cfn: CloudFormationClient, ctx: StackContext, name: str) -> dict[str, Any] | None:
        """The stack as it is once no operation is running on it (an operator waits, too)."""
        stack = _describe(cfn, name)
        if stack and stack["StackStatus"].endswith("_IN_PROGRESS") and stack["StackStatus"] != "REVIEW_IN_PROGRESS":
            log.info(f"stack {name} is {stack['StackStatus']}: waiting for that operation to finish")
            self._wait(cfn, ctx, stack["StackId"], "waiting for a running operation", mark=True)
            stack = _describe(cfn, name)
        return stack

    def _create_change_set(
        self, cfn: CloudFormationClient, ctx: StackContext, name: str, template: Template, kind: str
    ) -> str | None:
        """A ready change set's id, or None when it holds no changes."""
        from botocore.exceptions import ClientError

        with _aws_errors("creating a change set"):
            try:
                change_set = cfn.create_change_set(
                    StackName=name,
                    ChangeSetName=f"iac-runner-{uuid.uuid4().hex[:12]}",
                    ChangeSetType=kind,  # type: ignore[arg-type]
                    TemplateBody=template.body,
                    Parameters=parameters(template, ctx),  # type: ignore[arg-type]
                    Capabilities=CAPABILITIES,  # type: ignore[arg-type]
                    Description="created by iac-runner",
                )["Id"]
            except ClientError as exc:
                # The UpdateStack wording of "no changes"; some endpoints answer a change set with it too.
                if _is_no_changes(exc.response.get("Error", {}).get("Message", "")):
                    return None
                raise
        poller = _Poller(ctx, "waiting for the change set")
        while True:
            with _aws_errors("reading the change set"):
                described = cfn.describe_change_set(ChangeSetName=change_set)
            status = described["Status"]
            if status == "CREATE_COMPLETE":
                return change_set
            if status == "FAILED":
                reason = described.get("StatusReason", "")
                if _is_no_changes(reason):
                    with _aws_errors("deleting an empty change set"):
                        cfn.delete_change_set(ChangeSetName=change_set)
                    return None
                self._discard(cfn, name, change_set, kind)
                raise EngineError(
                    f"CloudFormation rejected the change set for stack {name}: {reason}",
                    where=f"{template.path.name} (stack {name})",
                    fix="Fix the template or inputs named in the reason; nothing was changed.",
                )
            poller.sleep()

    def _changes(self, cfn: CloudFormationClient, change_set: str) -> list[ResourceChange]:
        actions = {"Add": "add", "Modify": "change", "Remove": "remove", "Import": "add", "Dynamic": "change"}
        changes = []
        with _aws_errors("reading the change set"):
            for page in cfn.get_paginator("describe_change_set").paginate(ChangeSetName=change_set):
                for change in page.get("Changes", []):
                    rc = change.get("ResourceChange", {})
                    action = actions.get(rc.get("Action", ""), "change")
                    if rc.get("Replacement") == "True":
                        action = "replace"
                    changes.append(ResourceChange(rc.get("LogicalResourceId", "?"), action, rc.get("ResourceType", "")))
        return changes

    def _discard(self, cfn: CloudFormationClient, name: str, change_set: str, kind: str) -> None:
        """Remove a change set that will not run, and the empty stack a CREATE change set made with it."""
        with _aws_errors("deleting the change set"):
            cfn.delete_change_set(ChangeSetName=change_set)
            if kind == "CREATE":
                cfn.delete_stack(StackName=name)

    def _execute(self, cfn: CloudFormationClient, ctx: StackContext, name: str, change_set: str, kind: str) -> None:
        with _aws_errors("reading the change set"):
            stack_id = cfn.describe_change_set(ChangeSetName=change_set)["StackId"]
        events = _Events(cfn, stack_id)
        events.mark_existing()
        with _aws_errors("executing the change set"):
            cfn.execute_change_set(ChangeSetName=change_set)
        status = self._wait(cfn, ctx, stack_id, f"{kind.lower()} of stack {name}", events=events)
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise _failed(name, status, events, "could not be created" if kind == "CREATE" else "could not be updated")
        log.info(f"stack {name}: {status}")

    def _delete(self, cfn: CloudFormationClient, ctx: StackContext, stack_id: str) -> None:
        events = _Events(cfn, stack_id)
        events.mark_existing()
        with _aws_errors("deleting the stack"):
            cfn.delete_stack(StackName=stack_id)
        status = self._wait(cfn, ctx, stack_id, "deleting the stack", events=events)
        if status != "DELETE_COMPLETE":
            name = stack_id.split("/")[1] if "/" in stack_id else stack_id
            raise _failed(name, status, events, "could not be deleted", fix=DELETE_FIX)
        log.info("stack deleted")

    def _wait(
        self,
        cfn: CloudFormationClient,
        ctx: StackContext,
        stack_id: str,
        doing: str,
        *,
        events: _Events | None = None,
        mark: bool = False,
    ) -> str:
        """Stream events until the stack settles; return its final status."""
        events = events or _Events(cfn, stack_id)
        if mark:
            events.mark_existing()
        poller = _Poller(ctx, doing)
        while True:
            new = events.poll()
            stack = _describe(cfn, stack_id)
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if not status.endswith("_IN_PROGRESS"):
                events.poll()
                return status
            poller.sleep(activity=bool(new))


class _Poller:
    """Sleeps a short, growing interval between polls until the run's deadline; activity resets it."""

    def __init__(self, ctx: StackContext, doing: str) -> None:
        self.deadline = ctx.deadline
        self.doing = doing
        self.interval = POLL_FIRST

    def sleep(self, activity: bool = False) -> None:
        self.deadline.check(self.doing)
        if activity:
            self.interval = POLL_FIRST
        time.sleep(min(self.interval, max(self.deadline.remaining(), 0)))
        self.interval = min(self.interval * 1.5, POLL_MAX)
        self.deadline.check(self.doing)


def _describe(cfn: CloudFormationClient, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    with _aws_errors("reading the stack"):
        try:
            stacks = cfn.describe_stacks(StackName=name).get("Stacks", [])
        except ClientError as exc:
            if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
                return None
            raise
    stack = dict(stacks[0]) if stacks else None
    if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
        return None
    return stack


def _is_no_changes(reason: str) -> bool:
    return any(marker in reason.lower() for marker in NO_CHANGES)


def _region() -> str | None:
    """The AWS region: botocore's own resolution, then AWS_REGION (which older botocore ignores)."""
    import boto3

    return boto3.session.Session().region_name or os.environ.get("AWS_REGION")


def _change_set_type(name: str, stack: Mapping[str, Any] | None) -> str:
    """UPDATE for a stable stack, CREATE for a new one (or one a change set left in review); other states
    block changes until an operator steps in."""
    status = stack["StackStatus"] if stack else None
    if status in UPDATABLE:
        return "UPDATE"
    if status is None or status == "REVIEW_IN_PROGRESS":
        return "CREATE"
    assert stack is not None
    raise _blocked(name, stack)


def _blocked(name: str, stack: Mapping[str, Any]) -> EngineError:
    status = stack["StackStatus"]
    fixes = {
        "UPDATE_ROLLBACK_FAILED": "Continue the rollback (`aws cloudformation continue-update-rollback "
        f"--stack-name {name}`, skipping the resources that cannot roll back), then run again.",
        "DELETE_FAILED": f"Fix what blocked the delete (see the stack's events), delete stack {name}, then run again.",
    }
    return EngineError(
        f"Stack {name} is in {status}, which blocks updates.",
        where=f"CloudFormation stack {name}: {stack.get('StackStatusReason', '')}".rstrip(": "),
        fix=fixes.get(status, "Bring the stack back to a stable state in the CloudFormation console, then run again."),
    )


DELETE_FIX = (
    "Remove what blocks the delete (the failure above, e.g. empty the bucket or drop what depends on the "
    "resource), then destroy again (ACTION=destroy / `iac-runner destroy`): CloudFormation retries deleting "
    "what is left."
)


def _failed(name: str, status: str, events: _Events, what: str, fix: str = "") -> EngineError:
    causes = events.failures or ["(no resource reported a reason; see the stack's events in the console)"]
    return EngineError(
        f"Stack {name} {what}: it ended in {status}.",
        where=f"first failure: {causes[0]}",
        fix=fix
        or "Fix the cause above in the template or inputs and run again; a failed first create is "
        "deleted and recreated on the next run.",
        details="Failed resources:\n" + "\n".join(f"- {c}" for c in causes[:10]),
    )


BACKEND = CloudFormationBackend()
