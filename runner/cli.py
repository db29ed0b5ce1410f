"""`iac-runner`: turns flags and env into a run request, runs it, reports the result.

Heavy modules (pydantic, GitPython, boto3, cfn-lint) are imported inside the commands so that
`iac-runner --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError, ExitCode, RunnerError
from runner.log import log
from runner.secrets import REGISTRY

if TYPE_CHECKING:
    from runner.run import RunRequest, RunResult

LOCAL_ACTIONS = ("apply", "destroy", "plan", "outputs", "validate")


class _ErrorSink:
    """Where a failure is reported besides the log: the driver's ERROR_FILE or --out-dir/error.txt."""

    path: Path | None = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    fmt = args.log_format or os.environ.get("IAC_RUNNER_LOG_FORMAT", "text")
    log.configure("json" if fmt == "json" else "text", debug=args.debug)
    sink = _ErrorSink()
    try:
        code: int = args.handler(args, sink)
        return code
    except RunnerError as err:
        return _report(err, sink)
    except KeyboardInterrupt:
        return _report(RunnerError("The run was interrupted."), sink, code=ExitCode.INTERRUPTED)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        internal = RunnerError(
            f"Internal error in iac-runner: {type(exc).__name__}: {exc}",
            fix="Run again with --debug for the traceback and report it; this is a bug, not your configuration.",
        )
        return _report(internal, sink)


def _report(err: RunnerError, sink: _ErrorSink, code: int | None = None) -> int:
    text = REGISTRY.redact(err.render())
    summary, _, rest = text.partition("\n")
    log.error(summary)
    for line in filter(None, rest.splitlines()):
        log.info(line)
    if sink.path is not None:
        from runner.files import write_atomic

        try:
            write_atomic(sink.path, text + "\n")
        except OSError as exc:
            log.error(f"could not write the error file {sink.path}: {exc.strerror}")
    return int(code if code is not None else err.exit_code)


# -- commands ------------------------------------------------------------------------------------------


def _container(args: argparse.Namespace, sink: _ErrorSink) -> int:
    from runner import contract

    sink.path = contract.error_file(os.environ)
    request = contract.request(os.environ)
    log.configure(request.settings.log_format, debug=args.debug)
    _execute(request)
    return ExitCode.OK


def _local(args: argparse.Namespace, sink: _ErrorSink) -> int:
    request = _local_request(args, sink)
    result = _execute(request)
    if request.action == "plan" and result.plan is not None:
        print(f"Plan: {result.plan}")
    elif request.action in ("apply", "outputs") and request.output_files is None:
        from runner.outputs import masked

        print(json.dumps(masked(result.outputs), indent=2, sort_keys=True))
    elif request.action == "validate":
        print(f"{result.backend} stack {result.stack_name!r} is valid")
    return ExitCode.OK


def _local_request(args: argparse.Namespace, sink: _ErrorSink) -> RunRequest:
    from runner.outputs import OutputFiles
    from runner.run import RunRequest
    from runner.settings import (
        check_no_overlap,
        load_inputs_file,
        load_settings,
        parse_assignments,
        secret_inputs_from_env,
    )

    files = None
    if args.out_dir:
        out = Path(args.out_dir)
        if not out.is_dir():
            raise ConfigError(f"--out-dir {out} is not a directory.", fix="Create it first.")
        sink.path = out / "error.txt"
        files = OutputFiles(values=out / "outputs.json", secrets=out / "secret-outputs.json")
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
    )


def _execute(request: RunRequest) -> RunResult:
    from runner.run import execute

    result = execute(request)
    log.step(f"{request.action} finished", commit=result.source.commit, backend=result.backend)
    return result


def _backends(args: argparse.Namespace, sink: _ErrorSink) -> int:
    import backends
    from backends.base import EngineUnavailable

    for name in backends.names():
        try:
            version = backends.get(name).engine_version()
        except (EngineUnavailable, RunnerError) as exc:
            version = f"unavailable: {exc}"
        print(f"{name:16} {version}")
    return ExitCode.OK


def _demo(args: argparse.Namespace, sink: _ErrorSink) -> int:
    from runner.demo import run_demo

    return run_demo()


def _definition_render(args: argparse.Namespace, sink: _ErrorSink) -> int:
    from runner.render import RenderRequest, render
    from runner.settings import load_inputs_file

    request = RenderRequest(
        backend=args.backend,
        source_url=args.source_url,
        ref=args.source_ref,
        path=args.source_path,
        resource_type=args.resource_type,
        id=args.id,
        image=args.image,
        format=args.format,
        state_url=args.state_url,
        inputs=load_inputs_file(Path(args.inputs), "--inputs") if args.inputs else None,
        secret_inputs=args.secret_input,
        secret_store=args.secret_store,
        git_auth=args.git_auth,
        action=args.action,
        driver_account=args.driver_account,
    )
    sys.stdout.write(render(request))
    return ExitCode.OK


def _definition_validate(args: argparse.Namespace, sink: _ErrorSink) -> int:
    from runner.gitops import Options, validate
    from runner.settings import parse_assignments

    options = Options(
        url_map=parse_assignments(args.url_map, "--url-map", as_json=False),
        secrets=parse_assignments(args.secret, "--secret", as_json=False),
        offline=args.offline,
    )
    REGISTRY.add_all(options.secrets.values())
    unknown = sorted(set(options.secrets) - {"source.password", "source.ssh_key"})
    if unknown:
        raise ConfigError(
            f"--secret {unknown[0]} is not a secret validate uses.",
            where="--secret",
            fix="validate takes source.password (a token) or source.ssh_key, to check out private repositories.",
        )
    report = validate(Path(args.dir), options)
    for problem in report.problems:
        print(REGISTRY.redact(problem.render()))
    verdict = f"{len(report.problems)} problem(s)" if report.problems else "no problems"
    print(f"{report.definitions} definition(s) in {report.files} file(s) checked: {verdict}")
    return ExitCode.CONFIG if report.problems or not report.definitions else ExitCode.OK


def _driver_emulate(args: argparse.Namespace, sink: _ErrorSink) -> int:
    from runner.emulate import EmulateRequest, emulate
    from runner.settings import parse_assignments

    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is not a directory.", fix="Create it first.")
    secrets = parse_assignments(args.secret, "--secret", as_json=False)
    REGISTRY.add_all(secrets.values())
    request = EmulateRequest(
        definition=Path(args.definition),
        action=args.action,
        inputs=Path(args.inputs) if args.inputs else None,
        secrets=secrets,
        endpoint=args.endpoint,
        docker=args.docker,
        placeholders=parse_assignments(args.placeholder, "--placeholder", as_json=False),
        url_map=parse_assignments(args.url_map, "--url-map", as_json=False),
        state_url=args.state_url,
        out_dir=out_dir,
        keep=args.keep,
        timeout=args.timeout,
    )
    result = emulate(request)
    print(result.summary())
    return result.exit_code


# -- parser --------------------------------------------------------------------------------------------

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
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=("text", "json"), help="text (default) or one JSON object per line")
    common.add_argument("--debug", action="store_true", help="show debug lines and Python tracebacks")

    parser = argparse.ArgumentParser(
        prog="iac-runner",
        parents=[common],
        description="Apply and destroy OpenTofu, Pulumi and CloudFormation stacks as a Container Driver job, "
        "and test them locally.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(
        sub, "container", _container, common, "contract mode (the image's entrypoint): everything from the environment"
    )
    helps = {
        "apply": "create or update the stack (idempotent)",
        "destroy": "delete the stack (already gone = success)",
        "plan": "preview the changes an apply would make",
        "outputs": "print the stack's outputs",
        "validate": "check the stack and its inputs without changing anything",
    }
    for action in LOCAL_ACTIONS:
        cmd = _command(sub, action, _local, common, helps[action])
        cmd.add_argument(
            "stack_dir",
            nargs="?",
            default=".",
            metavar="STACK_DIR",
            help="the stack folder, or the base for --path (default: .)",
        )
        _local_flags(cmd)
    _command(sub, "backends", _backends, common, "list the backends and the engine version each would use")
    _command(sub, "demo", _demo, common, "run every example stack against an embedded AWS emulator (moto)")
    _definition_commands(sub, common)
    _driver_commands(sub, common)
    return parser


def _definition_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "definition",
        parents=[common],
        help="render and check Humanitec resource definitions (humanitec/container)",
        description="Render resource definitions and Kubernetes Jobs from the templates; check a GitOps folder.",
    )
    commands = group.add_subparsers(dest="definition_command", required=True, metavar="COMMAND")
    render = _command(commands, "render", _definition_render, common, "print a ready definition (or Job), checked")
    render.add_argument("--backend", required=True, help="opentofu, pulumi or cloudformation")
    render.add_argument("--source-url", required=True, help="the git URL of the stacks repository")
    render.add_argument(
        "--ref",
        dest="source_ref",
        default="main",
        help="a branch (becomes refs/heads/NAME), refs/tags/TAG or a commit SHA (default: main)",
    )
    render.add_argument("--path", dest="source_path", required=True, help="the stack's folder in the repository")
    render.add_argument("--resource-type", required=True, help="the resource type it provisions (s3, postgres, ...)")
    render.add_argument("--id", required=True, help="the definition's id (a Job: the stack's name)")
    render.add_argument("--image", required=True, help="the iac-driver-runner image, e.g. ghcr.io/acme/iac-runner:0.1")
    render.add_argument("--format", choices=("definition", "job"), default="definition", help="default: definition")
    render.add_argument("--state-url", help="s3://bucket/prefix for engine state (default: the config resource's)")
    render.add_argument("--inputs", help="JSON file with the stack's inputs (placeholders allowed in values)")
    render.add_argument(
        "--secret-input",
        action="append",
        default=[],
        metavar="NAME",
        help="a secret input of the stack, read from the secret store; repeatable",
    )
    render.add_argument("--secret-store", default="platform-secrets", help="the secret store of secret_refs")
    render.add_argument("--git-auth", choices=("token", "ssh", "none"), help="default: from the URL's scheme")
    render.add_argument("--action", choices=("create", "destroy"), default="create", help="--format job: the action")
    render.add_argument("--driver-account", help="the cloud account whose credentials the job gets")
    validate = _command(
        commands, "validate", _definition_validate, common, "check every resource definition of a GitOps folder"
    )
    validate.add_argument("dir", metavar="DIR", help="the folder (or one file) of resource definitions")
    validate.add_argument(
        "--url-map",
        action="append",
        default=[],
        metavar="URL=OTHER",
        help="check out OTHER where a definition's source.url is URL (a local clone, a mirror); repeatable",
    )
    validate.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="source.password or source.ssh_key for private repositories (or IAC_RUNNER_SOURCE_TOKEN / _SSH_KEY)",
    )
    validate.add_argument("--offline", action="store_true", help="skip the checks that check the source out")


def _driver_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "driver",
        parents=[common],
        help="run a resource definition here, as the Container Driver would",
        description="Reproduce what the Container Driver does with a resource definition, on this machine.",
    )
    commands = group.add_subparsers(dest="driver_command", required=True, metavar="COMMAND")
    emulate = _command(
        commands, "emulate", _driver_emulate, common, "run a definition's job here, as the Container Driver would"
    )
    emulate.add_argument("definition", metavar="DEFINITION", help="the resource definition (YAML)")
    emulate.add_argument("--action", choices=("create", "destroy"), required=True, help="the driver's ACTION")
    emulate.add_argument("--inputs", help="JSON file of resource inputs: replaces the definition's inputs file")
    emulate.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a secret reference's value: a job variable (IAC_RUNNER_SECRET_x also as x), source.password, "
        "source.ssh_key; repeatable (the environment variable of the same name works too)",
    )
    emulate.add_argument(
        "--endpoint",
        help="moto (start the embedded emulator), an emulator's http:// URL, or aws "
        "(default: moto unless AWS credentials are set)",
    )
    emulate.add_argument("--docker", action="store_true", help="run the job's image with Docker instead")
    emulate.add_argument(
        "--placeholder",
        action="append",
        default=[],
        metavar="EXPR=VALUE",
        help="the value of a ${EXPR} placeholder, e.g. context.app.id=shop; repeatable",
    )
    emulate.add_argument(
        "--url-map", action="append", default=[], metavar="URL=OTHER", help="check out OTHER where source.url is URL"
    )
    emulate.add_argument("--state-url", help="engine state here instead (default: a per-user folder)")
    emulate.add_argument("--out-dir", help="copy outputs.json, secret-outputs.json and error.txt here")
    emulate.add_argument("--keep", action="store_true", help="keep the shared directory (its path is logged)")
    emulate.add_argument("--timeout", type=float, help="seconds for the whole job (default: its own + 300)")


def _command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace, _ErrorSink], int],
    common: argparse.ArgumentParser,
    help_text: str,
) -> argparse.ArgumentParser:
    cmd: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
    cmd.set_defaults(handler=handler)
    return cmd


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


if __name__ == "__main__":
    sys.exit(main())
