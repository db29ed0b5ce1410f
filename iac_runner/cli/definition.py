"""`iac-runner definition render | validate`: resource definitions from the templates, and a GitOps folder's
definitions checked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from iac_runner.cli.base import ErrorSink, add_command, add_group
from iac_runner.common.errors import ConfigError, ExitCode
from iac_runner.common.secrets import REGISTRY


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    commands = add_group(
        sub,
        "definition",
        common,
        "render and check Humanitec resource definitions (humanitec/container)",
        "Render resource definitions and Kubernetes Jobs from the templates; check a GitOps folder.",
    )
    render = add_command(commands, "render", _definition_render, common, "print a ready definition (or Job), checked")
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
    render.add_argument(
        "--format",
        choices=("definition", "job", "drift-cronjob"),
        default="definition",
        help="a resource definition (default), a Kubernetes Job, or a CronJob that detects drift on a schedule",
    )
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
    render.add_argument(
        "--schedule",
        default="@daily",
        help="--format drift-cronjob: when it runs, a cron schedule in UTC (default @daily)",
    )
    validate = add_command(
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


def _definition_render(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner.humanitec.render import RenderRequest, render
    from iac_runner.job.settings import load_inputs_file

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
        schedule=args.schedule,
    )
    sys.stdout.write(render(request))
    return ExitCode.OK


def _definition_validate(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner.humanitec.validate import Options, validate
    from iac_runner.job.settings import parse_assignments

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
