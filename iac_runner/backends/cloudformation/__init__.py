"""AWS CloudFormation through botocore: change sets for create and update, stack events as progress.

CloudFormation keeps its own state (the stack), so this backend needs no state URL. The same code runs against
real AWS and moto: botocore honours AWS_ENDPOINT_URL and the standard AWS_* variables.

An unchanged create takes a fast path: the deployed template carries a fingerprint of what was deployed
(template.py), and when it matches, neither cfn-lint nor a change set is needed — on AWS a change set takes
seconds to say "no changes". A run interrupted (SIGTERM) while no engine process runs stops at once, removes a
change set it made but did not execute, and says what state the stack is in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iac_runner.backends.base import (
    BackendDefaults,
    ChangeSummary,
    Declared,
    Drift,
    DriftedResource,
    EngineUnavailable,
    InputSpec,
    Output,
    ResourceChange,
    StackContext,
    StackFile,
)
from iac_runner.backends.cloudformation import api as aws
from iac_runner.backends.cloudformation.template import (
    CAPABILITIES,
    Template,
    deployed_fingerprint,
    find_template,
    fingerprint,
    is_no_echo,
    lint,
    lint_error,
    load_template,
    parameters,
    read_declared,
    secret_parameter_problem,
    unprovable,
    with_fingerprint,
)
from iac_runner.common.errors import ConfigError, Diagnostic, EngineError, Interrupted, RunnerError
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize
from iac_runner.common.process import Signalled, interrupted

UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
             "IMPORT_ROLLBACK_COMPLETE"}  # fmt: skip
# A first create that failed leaves a stack that can only be deleted; an operator deletes and recreates it.
FAILED_CREATE = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"}
# A run killed between creating and executing a change set leaves an empty stack under review.
REVIEW = "REVIEW_IN_PROGRESS"
NO_CHANGES = ("didn't contain changes", "no updates are to be performed", "no changes")
_ACTIONS = {"Add": "add", "Modify": "change", "Remove": "remove", "Import": "add", "Dynamic": "change"}


class CloudFormationBackend(BackendDefaults):
    name = "cloudformation"

    def detect(self, folder: Path) -> str | None:
        path = find_template(folder, None)
        return path.name if path else None

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        path = find_template(folder, stack_file.template)
        data = read_declared(path) if path is not None and path.is_file() else None
        if data is None:
            return {}, False
        specs = data.get("Parameters") or {}
        return {
            name: InputSpec("Default" not in spec, is_no_echo(spec))
            for name, spec in specs.items()
            if isinstance(spec, dict)
        }, True

    def secret_input_problem(self, name: str, spec: InputSpec) -> tuple[str, str] | None:
        return secret_parameter_problem(name, spec.secret)

    def needs_state(self, folder: Path | None) -> bool:
        return False  # the stack itself, in AWS, is the state

    def engine_version(self) -> str:
        try:
            import botocore
            import cfnlint.version
        except ImportError as exc:  # pragma: no cover - both are dependencies of the package
            raise EngineUnavailable(f"{exc.name} is not installed") from None
        return f"CloudFormation API (botocore {botocore.__version__}, cfn-lint {cfnlint.version.__version__})"

    def stack_name(self, ctx: StackContext) -> str:
        return sanitize(ctx.stack_name, allowed="a-zA-Z0-9-", max_length=128)

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        with ctx.events.phase("validate"):
            _validated(ctx, load_template(ctx), aws.region())

    def plan(self, ctx: StackContext) -> ChangeSummary:
        with _Run(ctx, self.stack_name(ctx)) as run:
            return run.plan()

    def apply(self, ctx: StackContext) -> list[Output]:
        with _Run(ctx, self.stack_name(ctx)) as run:
            run.apply()
            return run.outputs()

    def destroy(self, ctx: StackContext) -> None:
        with _Run(ctx, self.stack_name(ctx)) as run:
            run.destroy()

    def outputs(self, ctx: StackContext) -> list[Output]:
        with _Run(ctx, self.stack_name(ctx)) as run:
            return run.outputs()

    def drift(self, ctx: StackContext) -> Drift:
        with _Run(ctx, self.stack_name(ctx)) as run:
            return run.drift()


def _validated(ctx: StackContext, template: Template, region: str | None) -> Template:
    """The template, once cfn-lint (for `region`) and the inputs have passed: before anything reaches AWS."""
    log.step("validating the template (cfn-lint) and the inputs")
    ctx.deadline.check("validating the template")
    matches = lint(template, region or "us-east-1")
    for match in (m for m in matches if m.rule.id.startswith("W")):
        log.warning(f"{template.path.name}:{match.linenumber} {match.rule.id} {match.message}")
    errors = [m for m in matches if m.rule.id.startswith("E")]
    if errors:
        raise lint_error(template.path, errors, "is invalid")
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


class _Run:
    """One run's calls on one stack; on an interrupt, it cleans up what it started and says where the stack is."""

    def __init__(self, ctx: StackContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.api = aws.Api(aws.client(), ctx.deadline, ctx.retries)
        #: A change set made but not executed (removed if the run stops before executing it), and its type.
        self.pending: tuple[str, str] | None = None
        self.stack: dict[str, Any] | None = None

    def __enter__(self) -> _Run:
        import botocore

        self.ctx.events.engine_version("CloudFormation API", f"botocore {botocore.__version__}")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any) -> None:
        if isinstance(error, Signalled | Interrupted):
            raise self._interrupted(error) from None

    # -- verbs -------------------------------------------------------------------------------------------

    def plan(self) -> ChangeSummary:
        with self.ctx.events.phase("validate"):
            template = _validated(self.ctx, load_template(self.ctx), self.api.region)
        with self.ctx.events.phase("plan"):
            stack = self.settled()
            if stack is None or stack["StackStatus"] in (*FAILED_CREATE, REVIEW):
                # A new stack (or one apply recreates): every resource of the template is added.
                if stack is not None:
                    log.warning(
                        f"stack {self.name} is in {stack['StackStatus']}: apply will delete it and create it again"
                    )
                summary = _all_added(template)
            else:
                summary = self._previewed(template, _change_set_type(self.name, stack))
            self.ctx.events.changes(summary)
        for change in summary.changes:
            log.resource(change.address, f"will {change.action}", ", ".join(change.attributes), type=change.type)
        log.info(f"plan: {summary}")
        return summary

    def apply(self) -> None:
        template = load_template(self.ctx)
        stack = self.settled()
        if self._unchanged(template, stack):
            return
        with self.ctx.events.phase("validate"):
            _validated(self.ctx, template, self.api.region)
        if stack and stack["StackStatus"] in (*FAILED_CREATE, REVIEW):
            log.warning(f"stack {self.name} is in {stack['StackStatus']}: deleting it so it can be created again")
            self._delete(stack["StackId"])
            stack = None
        kind = _change_set_type(self.name, stack)
        body = self._body(template, stack)
        log.step(f"{'updating' if kind == 'UPDATE' else 'creating'} stack {self.name} with a change set")
        with self.ctx.events.phase("plan"):
            change_set = self._create_change_set(template, kind, body)
            summary = ChangeSummary(tuple(self._changes(change_set))) if change_set else ChangeSummary()
            self.ctx.events.changes(summary)
        if change_set is None:
            log.info(f"stack {self.name} is up to date: no changes")
            return
        for change in summary.changes:
            log.resource(change.address, f"will {change.action}", ", ".join(change.attributes), type=change.type)
        try:
            self.ctx.approve(summary)
        except RunnerError:
            self._discard(change_set, kind)
            raise
        with self.ctx.events.phase("apply"):
            self._execute(change_set, kind)

    def destroy(self) -> None:
        stack = self.settled()
        if stack is None:
            log.info(f"stack {self.name} does not exist: nothing to destroy")
            return
        log.step(f"deleting stack {self.name}")
        with self.ctx.events.phase("destroy"):
            self._delete(stack["StackId"])

    def outputs(self) -> list[Output]:
        with self.ctx.events.phase("outputs"):
            stack = self.stack if self.stack is not None else self._describe(self.name)
        if stack is None or stack["StackStatus"] == REVIEW:
            raise EngineError(
                f"Stack {self.name} does not exist, so it has no outputs.",
                where=f"CloudFormation stack {self.name} in region {self.api.region}",
                fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
            )
        secret = set(self.ctx.stack_file.secret_outputs)
        return [
            Output(o["OutputKey"], o.get("OutputValue", ""), secret=o["OutputKey"] in secret)
            for o in stack.get("Outputs", [])
        ]

    def drift(self) -> Drift:
        """DetectStackDrift, then the resources that are MODIFIED or DELETED, with their differing properties."""
        stack = self.settled()
        if stack is None:
            raise EngineError(
                f"Stack {self.name} does not exist, so it cannot drift.",
                fix="Apply the stack first (ACTION=create / `iac-runner apply`).",
            )
        log.step(f"detecting drift of stack {self.name}")
        with self.ctx.events.phase("refresh"):
            detection = self.api.call("detect_stack_drift", "starting drift detection", StackName=self.name)
            poller = aws.Poller(self.ctx.deadline, "detecting drift")
            while True:
                status = self.api.call(
                    "describe_stack_drift_detection_status",
                    "reading the drift detection",
                    StackDriftDetectionId=detection["StackDriftDetectionId"],
                )
                if status["DetectionStatus"] != "DETECTION_IN_PROGRESS":
                    break
                poller.sleep()
            if status["DetectionStatus"] == "DETECTION_FAILED":
                log.warning(f"drift detection was partial: {status.get('DetectionStatusReason', '')}")
            resources = []
            pages = self.api.pages(
                "describe_stack_resource_drifts",
                "reading the drifted resources",
                StackName=self.name,
                StackResourceDriftStatusFilters=["MODIFIED", "DELETED"],
            )
            for page in pages:
                for found in page.get("StackResourceDrifts", []):
                    names = tuple(d.get("PropertyPath", "").lstrip("/") for d in found.get("PropertyDifferences", []))
                    deleted = found.get("StackResourceDriftStatus") == "DELETED"
                    resources.append(
                        DriftedResource(found["LogicalResourceId"], found.get("ResourceType", ""), names, deleted)
                    )
        for resource in resources:
            what = "deleted" if resource.deleted else f"changed: {', '.join(resource.attributes) or '?'}"
            log.resource(resource.address, "drifted", what, type=resource.type)
        log.info(f"drift: {len(resources)} resource(s) differ from the stack" if resources else "no drift")
        return Drift(tuple(resources))

    # -- the stack ---------------------------------------------------------------------------------------

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            stacks = self.api.call("describe_stacks", "reading the stack", StackName=name).get("Stacks", [])
        except EngineError as error:
            if aws.is_missing_stack(error):
                return None
            raise
        stack = dict(stacks[0]) if stacks else None
        if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
            return None
        return stack

    def settled(self) -> dict[str, Any] | None:
        """The stack as it is once no operation is running on it (an operator waits, too)."""
        stack = self._describe(self.name)
        if stack and stack["StackStatus"].endswith("_IN_PROGRESS") and stack["StackStatus"] != REVIEW:
            log.info(f"stack {self.name} is {stack['StackStatus']}: waiting for that operation to finish")
            self._wait(stack["StackId"], "waiting for a running operation", mark=True)
            stack = self._describe(self.name)
        return stack

    def _unchanged(self, template: Template, stack: dict[str, Any] | None) -> bool:
        """The fast path: the deployed template carries the fingerprint of exactly what this create would deploy,
        so there is nothing to change (no cfn-lint, no change set)."""
        if stack is None or stack["StackStatus"] not in UPDATABLE:
            return False
        reason = unprovable(template)
        if reason:
            log.info(f"stack {self.name} exists; a change set decides what changes, since {reason}")
            return False
        if set(stack.get("Capabilities") or []) - set(CAPABILITIES):
            return False
        params = parameters(template, self.ctx)
        wanted = fingerprint(template, params, self.name, _tags(stack))
        deployed = self.api.call("get_template", "reading the deployed template", StackName=self.name,
                                 TemplateStage="Original")  # fmt: skip
        if deployed_fingerprint(template, deployed.get("TemplateBody")) != wanted:
            return False
        self.stack = stack
        self.ctx.events.changes(ChangeSummary())
        log.info(f"stack {self.name} is up to date: no changes (what is deployed is what this create would deploy)")
        return True

    def _body(self, template: Template, stack: Mapping[str, Any] | None) -> str:
        """The template as deployed: with the fingerprint the next unchanged create checks, where it proves it."""
        reason = unprovable(template)
        if reason:
            log.debug(f"no fast path for later runs: {reason}")
            return template.body
        return with_fingerprint(
            template, fingerprint(template, parameters(template, self.ctx), self.name, _tags(stack))
        )

    def _previewed(self, template: Template, kind: str) -> ChangeSummary:
        change_set = self._create_change_set(template, kind, template.body)
        try:
            return ChangeSummary(tuple(self._changes(change_set))) if change_set else ChangeSummary()
        finally:
            if change_set:
                self._discard(change_set, kind)

    def _create_change_set(self, template: Template, kind: str, body: str) -> str | None:
        """A ready change set's id, or None when it holds no changes."""
        self.ctx.deadline.check("creating a change set")
        try:
            made = self.api.call(
                "create_change_set",
                "creating a change set",
                retry=False,
                StackName=self.name,
                ChangeSetName=f"iac-runner-{os.urandom(6).hex()}",
                ChangeSetType=kind,
                TemplateBody=body,
                Parameters=parameters(template, self.ctx),
                Capabilities=CAPABILITIES,
                Description="created by iac-runner",
            )
        except EngineError as error:
            # The UpdateStack wording of "no changes"; some endpoints answer a change set with it too.
            if _is_no_changes(error.summary):
                return None
            raise
        change_set = str(made["Id"])
        self.pending = (change_set, kind)
        poller = aws.Poller(self.ctx.deadline, "waiting for the change set")
        while True:
            described = self.api.call("describe_change_set", "reading the change set", ChangeSetName=change_set)
            status = described["Status"]
            if status == "CREATE_COMPLETE":
                return change_set
            if status == "FAILED":
                reason = described.get("StatusReason", "")
                if _is_no_changes(reason):
                    self.api.call("delete_change_set", "deleting an empty change set", ChangeSetName=change_set)
                    self.pending = None
                    return None
                self._discard(change_set, kind)
                raise EngineError(
                    f"CloudFormation rejected the change set for stack {self.name}: {reason}",
                    where=f"{template.path.name} (stack {self.name})",
                    fix="Fix the template or inputs named in the reason; nothing was changed.",
                )
            poller.sleep()

    def _changes(self, change_set: str) -> list[ResourceChange]:
        changes = []
        for page in self.api.pages("describe_change_set", "reading the change set", ChangeSetName=change_set):
            for change in page.get("Changes", []):
                changes.append(_change(change.get("ResourceChange", {})))
        return changes

    def _discard(self, change_set: str, kind: str) -> None:
        """Remove a change set that will not run, and the empty stack a CREATE change set made with it."""
        self.api.call("delete_change_set", "deleting the change set", ChangeSetName=change_set)
        if kind == "CREATE":
            self.api.call("delete_stack", "deleting the empty stack of the change set", StackName=self.name)
        self.pending = None

    def _execute(self, change_set: str, kind: str) -> None:
        stack_id = self.api.call("describe_change_set", "reading the change set", ChangeSetName=change_set)["StackId"]
        events = aws.Events(self.api, stack_id)
        events.mark_existing()
        self.ctx.deadline.check("about to execute the change set")
        self.api.changing = True
        self.pending = None
        # Sent once: after an ambiguous failure the change set may be running; the wait below finds out.
        try:
            self.api.call("execute_change_set", "executing the change set", retry=False, ChangeSetName=change_set)
        except RunnerError as error:
            if not error.transient:
                raise
            log.warning(f"executing the change set failed with {error.transient}: reading what CloudFormation did")
            if self._change_set_status(change_set) == "AVAILABLE":
                self.api.call("execute_change_set", "executing the change set", retry=False, ChangeSetName=change_set)
        status = self._wait(stack_id, f"{kind.lower()} of stack {self.name}", events=events)
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise _failed(
                self.name, status, events, "could not be created" if kind == "CREATE" else "could not be updated"
            )
        self.stack = None
        log.info(f"stack {self.name}: {status}")

    def _change_set_status(self, change_set: str) -> str:
        try:
            found = self.api.call("describe_change_set", "reading the change set", ChangeSetName=change_set)
        except EngineError:
            return "GONE"  # executed change sets are removed
        return str(found.get("ExecutionStatus", ""))

    def _delete(self, stack_id: str) -> None:
        events = aws.Events(self.api, stack_id)
        events.mark_existing()
        self.ctx.deadline.check("about to delete the stack")
        self.api.changing = True
        self.api.call("delete_stack", "deleting the stack", StackName=stack_id)
        status = self._wait(stack_id, "deleting the stack", events=events)
        if status != "DELETE_COMPLETE":
            name = stack_id.split("/")[1] if "/" in stack_id else stack_id
            raise _failed(name, status, events, "could not be deleted", fix=DELETE_FIX)
        log.info("stack deleted")

    def _wait(self, stack_id: str, doing: str, *, events: aws.Events | None = None, mark: bool = False) -> str:
        """Stream events until the stack settles; return its final status."""
        events = events or aws.Events(self.api, stack_id)
        if mark:
            events.mark_existing()
        poller = aws.Poller(self.ctx.deadline, doing)
        while True:
            new = events.poll()
            stack = self._describe(stack_id)
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if not status.endswith("_IN_PROGRESS"):
                events.poll()
                return status
            poller.sleep(activity=bool(new))

    # -- an interrupt ------------------------------------------------------------------------------------

    def _interrupted(self, error: BaseException) -> Interrupted:
        """Stop at once: remove a change set this run made but did not execute, and say where the stack is (an
        operation CloudFormation runs goes on without us; the next run waits for it)."""
        signalled = interrupted(error.signum) if isinstance(error, Signalled) else error
        assert isinstance(signalled, Interrupted)
        notes = []
        with _quietly():
            if self.pending is not None:
                change_set, kind = self.pending
                self._discard(change_set, kind)
                notes.append("the change set it had made was removed unexecuted")
            stack = self._describe(self.name)
            status = stack["StackStatus"] if stack else "does not exist"
            notes.append(f"stack {self.name} is {status}")
        return Interrupted(
            signalled.summary,
            where="; ".join(notes) or f"stack {self.name}",
            fix="Run the same action again: it waits for an operation CloudFormation still runs, then converges.",
        )


@contextmanager
def _quietly() -> Iterator[None]:
    """Best effort while stopping: a failure to tidy up must not hide the interrupt."""
    try:
        yield
    except (RunnerError, Signalled) as exc:
        log.debug(f"while stopping: {exc}")


def _tags(stack: Mapping[str, Any] | None) -> list[Any]:
    return sorted(([t["Key"], t["Value"]] for t in (stack or {}).get("Tags") or []), key=lambda kv: kv[0])


def _change(rc: Mapping[str, Any]) -> ResourceChange:
    action = _ACTIONS.get(rc.get("Action", ""), "change")
    replacement = rc.get("Replacement")
    forcing: tuple[str, ...] = ()
    reason = ""
    if replacement in ("True", "Conditional") and action == "change":
        action = "replace"
        reason = f"Replacement: {replacement}"
        forcing = tuple(
            dict.fromkeys(
                d.get("Target", {}).get("Name") or d.get("Target", {}).get("Attribute", "")
                for d in rc.get("Details", [])
                if d.get("Target", {}).get("RequiresRecreation") in ("Always", "Conditionally")
            )
        )
    return ResourceChange(rc.get("LogicalResourceId", "?"), action, rc.get("ResourceType", ""), reason, forcing)


def _all_added(template: Template) -> ChangeSummary:
    resources = (template.data.get("Resources") or {}).items()
    return ChangeSummary(
        tuple(ResourceChange(n, "add", str(r.get("Type", ""))) for n, r in resources if isinstance(r, dict))
    )


def _is_no_changes(reason: str) -> bool:
    return any(marker in reason.lower() for marker in NO_CHANGES)


def _change_set_type(name: str, stack: Mapping[str, Any] | None) -> str:
    """UPDATE for a stable stack, CREATE for a new one; other states block changes until an operator steps in."""
    status = stack["StackStatus"] if stack else None
    if status in UPDATABLE:
        return "UPDATE"
    if status is None:
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


def _failed(name: str, status: str, events: aws.Events, what: str, fix: str = "") -> EngineError:
    failures = events.failures
    causes = [f"{logical} ({kind}): {reason}" for logical, kind, reason in failures] or [
        "(no resource reported a reason; see the stack's events in the console)"
    ]
    return EngineError(
        f"Stack {name} {what}: it ended in {status}"
        + (f"; {failures[0][0]} failed: {failures[0][2][:200]}" if failures else "."),
        where=f"first failure: {causes[0]}",
        fix=fix
        or "Fix the cause above in the template or inputs and run again; a failed first create is "
        "deleted and recreated on the next run.",
        details="Failed resources:\n" + "\n".join(f"- {c}" for c in causes[:10]),
        resource=failures[0][0] if failures else "",
        diagnostics=tuple(Diagnostic("error", reason, "", logical) for logical, _, reason in failures[:20]),
    )


BACKEND = CloudFormationBackend()
