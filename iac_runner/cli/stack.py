"""The job's faces: `iac-runner container` (the image's entrypoint, everything from the environment) and the local
verbs `apply | destroy | plan | outputs | validate | drift [STACK_DIR]`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iac_runner.cli.base import ErrorSink, add_command
from iac_runner.common.errors import ConfigError, DriftFound, ExitCode
from iac_runner.common.log import log
from iac_runner.common.secrets import REGISTRY

if TYPE_CHECKING:
    from iac_runner.backends.base import Drift
    from iac_runner.job.run import RunRequest, RunResult

LOCAL_ACTIONS = ("apply", "destroy", "plan", "outputs", "validate", "drift")
_HELPS = {
    "apply": "create or update the stack (idempotent)",
    "destroy": "delete the stack (already gone = success)",
    "plan": "preview the changes an apply would make (--json: the changes as JSON on stdout)",
    "outputs": "print the stack's outputs",
    "validate": "check the stack and its inputs without changing anything",
    "drift": "compare the real infrastructure with the stack's state; exit 4 when they differ (--json: the drift)",
}
# Settings that have a flag of the same name (the rest come from the environment only).
_SETTING_FLAGS = (
    "lock_timeout",
    "tofu_binary",
    "backend",
    "source_url",
    "source_ref",
    "source_path",
    "stack_name",
    "state_url",
    "timeout",
    "log_format",
    "allow_replace",
    "report_file",
    "refresh",
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(
        sub, "container", _container, common, "contract mode (the image's entrypoint): everything from the environment"
    )
    for action in LOCAL_ACTIONS:
        cmd = add_command(sub, action, _local, common, _HELPS[action])
        cmd.add_argument(
            "stack_dir",
            nargs="?",
            default=".",
            metavar="STACK_DIR",
            help="the stack folder, or the base for --path (default: .)",
        )
        _local_flags(cmd)


def _container(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner.job import contract
    from iac_runner.job.report import RunReport

    sink.path = contract.error_file(os.environ)
    sink.report_path = contract.report_file(os.environ)
    sink.report = RunReport(action=os.environ.get("ACTION", ""))
    request = contract.request(os.environ, sink.report)
    log.configure(request.settings.log_format, debug=args.debug)
    result = _execute(request)
    return _drift_code(result)


def _local(args: argparse.Namespace, sink: ErrorSink) -> int:
    request = _local_request(args, sink)
    result = _execute(request)
    if request.action == "plan" and result.plan is not None:
        from iac_runner.job.report import changes_json

        print(json.dumps(changes_json(result.plan), indent=2) if args.json else f"Plan: {result.plan}")
    elif request.action == "drift" and result.drift is not None:
        from iac_runner.job.report import drift_json

        print(json.dumps(drift_json(result.drift), indent=2) if args.json else _drift_text(result.drift))
    elif request.action in ("apply", "outputs") and request.output_files is None:
        from iac_runner.job.outputs import masked

        print(json.dumps(masked(result.outputs), indent=2, sort_keys=True))
    elif request.action == "validate":
        print(f"{result.backend} stack {result.stack_name!r} is valid")
    return _drift_code(result)


def _drift_code(result: RunResult) -> int:
    """Drift found is exit 4, with what drifted in the error file (the driver shows it for any exit but 0)."""
    if result.drift is None or not result.drift.resources:
        return ExitCode.OK
    summary, _, details = _drift_text(result.drift).partition("\n")
    raise DriftFound(
        summary,
        where=f"stack {result.stack_name!r} ({result.backend})",
        fix="Apply the stack (ACTION=create / `iac-runner apply`; for pulumi with IAC_RUNNER_REFRESH=true / "
        "--refresh, as its update otherwise compares with the state only) to put the infrastructure back as the "
        "stack says, or change the stack to adopt what changed.",
        details=details,
    )


def _drift_text(drift: Drift) -> str:
    if not drift.resources:
        return "No drift: the infrastructure matches the stack's state."
    lines = [f"Drift: {len(drift.resources)} resource(s) differ from the stack's state."]
    for r in drift.resources:
        what = "deleted" if r.deleted else f"changed: {', '.join(r.attributes) or 'attributes not reported'}"
        lines.append(f"- {r.address}{f' ({r.type})' if r.type else ''}: {what}")
    return "\n".join(lines)


def _local_request(args: argparse.Namespace, sink: ErrorSink) -> RunRequest:
    from iac_runner.job.contract import FILES
    from iac_runner.job.outputs import OutputFiles
    from iac_runner.job.report import RunReport
    from iac_runner.job.run import RunRequest
    from iac_runner.job.settings import (
        check_no_overlap,
        load_inputs_file,
        load_settings,
        parse_assignments,
        secret_inputs_from_env,
    )

    sink.report = RunReport(action=args.command)
    report = args.report_file or os.environ.get("IAC_RUNNER_REPORT_FILE")
    sink.report_path = Path(report) if report else None
    files = None
    if args.out_dir:
        out = Path(args.out_dir)
        if not out.is_dir():
            raise ConfigError(f"--out-dir {out} is not a directory.", fix="Create it first.")
        sink.path = out / FILES["ERROR_FILE"]
        files = OutputFiles(values=out / FILES["OUTPUTS_FILE"], secrets=out / FILES["SECRET_OUTPUTS_FILE"])
    flags = {name: getattr(args, name) for name in _SETTING_FLAGS}
    settings = load_settings(flags)
    inputs = load_inputs_file(Path(args.inputs), "--inputs") if args.inputs else {}
    inputs.update(parse_assignments(args.var, "--var", as_json=True))
    secrets = {**secret_inputs_from_env(), **parse_assignments(args.secret, "--secret", as_json=False)}
    REGISTRY.add_all(secrets.values())
    check_no_overlap(inputs, secrets)
    return RunRequest(
        action=args.command,
        settings=settings,
        base_dir=Path(args.stack_dir).resolve(),
        inputs=inputs,
        secret_inputs=secrets,
        output_files=files,
        cancel_lock=args.cancel_lock,
        report=sink.report,
    )


def _execute(request: RunRequest) -> RunResult:
    from iac_runner.job.run import execute

    result = execute(request)
    log.step(f"{request.action} finished", commit=result.source.commit, backend=result.backend)
    return result


def _local_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--backend", help="opentofu, pulumi, cloudformation (default: detected)")
    cmd.add_argument("--source-url", help="git URL to check the stack out from (default: STACK_DIR)")
    cmd.add_argument("--ref", dest="source_ref", help="branch, tag, commit SHA or refs/... (default: remote HEAD)")
    cmd.add_argument("--path", dest="source_path", help="the stack's folder inside the repo or STACK_DIR")
    cmd.add_argument("--stack-name", help="the stack's identity (default: from the path)")
    cmd.add_argument("--state-url", help="file:///dir or s3://bucket/prefix for engine state")
    cmd.add_argument("--inputs", help="JSON file with the stack's inputs")
    cmd.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input (JSON values keep their type); repeatable",
    )
    cmd.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a secret input; repeatable (prefer IAC_RUNNER_SECRET_<NAME>: argv is visible in ps)",
    )
    cmd.add_argument("--timeout", type=int, help="overall seconds for the run (default 3600)")
    cmd.add_argument(
        "--lock-timeout", type=int, help="seconds to wait for a state lock held by another run (default 60)"
    )
    cmd.add_argument(
        "--cancel-lock",
        action="store_true",
        help="pulumi: release a lock a dead run left on the stack before acting (pulumi cancel)",
    )
    cmd.add_argument(
        "--engine-binary", dest="tofu_binary", help="opentofu backend: the binary to run, tofu or terraform"
    )
    cmd.add_argument(
        "--out-dir", help="write outputs.json, secret-outputs.json and error.txt here, as the driver would"
    )
    cmd.add_argument("--report", dest="report_file", help="write the run report (JSON) to this file")
    cmd.add_argument(
        "--allow-replace",
        help="resources the replacement guard lets a create replace or remove: `all`, or addresses comma-separated",
    )
    cmd.add_argument(
        "--refresh",
        action="store_true",
        default=None,
        help="read the real infrastructure before updating (pulumi up --refresh; tofu always does)",
    )
    cmd.add_argument("--json", action="store_true", help="plan, drift: print the result as JSON on stdout")
