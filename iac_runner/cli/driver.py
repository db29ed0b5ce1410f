"""`iac-runner driver emulate`: a resource definition run here, as the Container Driver runs it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from iac_runner.cli.base import ErrorSink, add_command, add_group
from iac_runner.common.errors import ConfigError
from iac_runner.common.secrets import REGISTRY


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    commands = add_group(
        sub,
        "driver",
        common,
        "run a resource definition here, as the Container Driver would",
        "Reproduce what the Container Driver does with a resource definition, on this machine.",
    )
    emulate = add_command(
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


def _driver_emulate(args: argparse.Namespace, sink: ErrorSink) -> int:
    from iac_runner.humanitec.emulate import EmulateRequest, emulate
    from iac_runner.job.settings import parse_assignments

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
