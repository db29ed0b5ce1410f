"""What the test tiers share: the runner run as a subprocess, as the driver runs it, with every run checked for the
suite's sentinel secret in its log, error file, values file and run report; the report checked against its schema;
git repositories; moto's clients; unique names."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
STACKS = ROOT / "stacks"
# Used as a secret input across the suite; must never show up outside the secrets file.
SENTINEL = "s3ntinel-Secret-9f1c2e7a"
REPORT_SCHEMA = ROOT / "docs" / "report.schema.json"
#: Where Container.run has the runner write its run report (IAC_RUNNER_REPORT_FILE, relative to SCRIPTS_DIRECTORY).
REPORT_FILE = "report.json"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def log(self) -> str:
        return self.stdout + self.stderr

    def read(self, name: str) -> str | None:
        path = self.files.get(name)
        return path.read_text() if path and path.exists() else None

    def json(self, name: str) -> Any:
        text = self.read(name)
        assert text is not None, f"{name} was not written; log:\n{self.log}"
        return json.loads(text)

    @property
    def error(self) -> str:
        return self.read("error") or ""

    def assert_ok(self) -> None:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.log}\nerror file: {self.error}"

    @property
    def report(self) -> Any:
        """The run report, checked against docs/report.schema.json."""
        document = self.json("report")
        check_report(document)
        return document


def check_no_leak(result: Result) -> None:
    assert SENTINEL not in result.log, "the sentinel secret leaked into the log"
    assert SENTINEL not in result.error, "the sentinel secret leaked into the error file"
    values = result.read("values")
    assert values is None or SENTINEL not in values, "the sentinel secret leaked into the values file"
    report = result.read("report")
    assert report is None or SENTINEL not in report, "the sentinel secret leaked into the run report"


@functools.cache
def _validator(part: str) -> Draft202012Validator:
    schema = json.loads(REPORT_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    if part:
        schema = {"$schema": schema["$schema"], "$ref": f"#/$defs/{part}", "$defs": schema["$defs"]}
    formats = Draft202012Validator.FORMAT_CHECKER
    # jsonschema checks date-time only with rfc3339-validator installed (the dev extra pins it): never skip it.
    assert "date-time" in formats.checkers, "date-time is not checked: pip install rfc3339-validator"
    return Draft202012Validator(schema, format_checker=formats)


def check_report(document: Any, part: str = "") -> None:
    """`document` against the report's schema, or against one of its parts (`changes`, `drift`: what plan --json
    and drift --json print)."""
    errors = sorted(_validator(part).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "the run report does not fit docs/report.schema.json:\n" + "\n".join(
        f"- {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:10]
    )


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without settings that would leak into the runner under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_RUNNER_", "AWS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    env.update(extra or {})
    return env


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "iac_runner", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    check_no_leak(result)
    return result


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    ).stdout.strip()


def make_repo(path: Path, files: Mapping[str, str] | None = None, copy_stacks: bool = True) -> Path:
    """A bare repository at `path` whose main branch holds `stacks/` (and `files`); returns the bare path."""
    work = path.with_name(path.name + "-work")
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    if copy_stacks:
        shutil.copytree(STACKS, work / "stacks")
    for name, text in (files or {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial", cwd=work)
    git("clone", "-q", "--bare", str(work), str(path), cwd=path.parent)
    git("remote", "add", "origin", str(path), cwd=work)
    return path


class Container:
    """Runs `iac-runner container` exactly as the Container Driver would: env contract, a fresh shared dir."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(env)
        self.runs = 0

    def run(
        self,
        action: str | None = "create",
        inputs: Mapping[str, Any] | str | bytes | None = None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str | None] | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> Result:
        self.runs += 1
        scripts = self.root / f"run{self.runs}"
        scripts.mkdir()
        for name, text in (files or {}).items():
            (scripts / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                (scripts / name).write_bytes(text)
            else:
                (scripts / name).write_text(text)
        contract = {
            "SCRIPTS_DIRECTORY": str(scripts),
            "OUTPUTS_FILE": "outputs.json",
            "SECRET_OUTPUTS_FILE": "secret-outputs.json",
            "ERROR_FILE": "error.txt",
            "IAC_RUNNER_REPORT_FILE": REPORT_FILE,
        }
        if action is not None:
            contract["ACTION"] = action
        if inputs is not None:
            if isinstance(inputs, bytes):
                (scripts / "inputs.json").write_bytes(inputs)
            else:
                (scripts / "inputs.json").write_text(inputs if isinstance(inputs, str) else json.dumps(inputs))
            contract["RESOURCE_INPUTS_FILE"] = "inputs.json"
        merged: dict[str, str | None] = {**self.env, **contract}
        merged.update({f"IAC_RUNNER_SECRET_{k}": v for k, v in (secrets or {}).items()})
        merged.update(env or {})
        final = {k: v for k, v in merged.items() if v is not None}
        proc = subprocess.run(
            [sys.executable, "-m", "iac_runner", "container"],
            env=final,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result = Result(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            out_dir=scripts,
            files={
                "values": scripts / final.get("OUTPUTS_FILE", "outputs.json"),
                "secrets": scripts / final.get("SECRET_OUTPUTS_FILE", "secret-outputs.json"),
                "error": scripts / final.get("ERROR_FILE", "error.txt"),
                "report": scripts / final.get("IAC_RUNNER_REPORT_FILE", REPORT_FILE),
            },
        )
        check_no_leak(result)
        return result


def unique(prefix: str) -> str:
    """A stack name no other test (or a concurrent run of the suite) uses: work dirs and state keys differ."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def isolate(container: Container, tmp_path: Path, **extra: str) -> Path:
    """Private temp and work dirs for the runner, state under tmp_path (file://); returns the state dir."""
    state = tmp_path / "state"
    (tmp_path / "tmp").mkdir(exist_ok=True)
    container.env.update({"TMPDIR": str(tmp_path / "tmp"), "IAC_RUNNER_STATE_URL": state.as_uri(), **extra})
    return state


def aws_client(service: str, aws: Mapping[str, str]) -> Any:
    """A boto3 client of `service` for the suite's moto (`aws`: the environment pointing at it)."""
    factory: Callable[..., Any] = boto3.client  # any service name: the stubs type each one separately
    return factory(
        service,
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3_client(aws: Mapping[str, str]) -> Any:
    return aws_client("s3", aws)


def ssm_client(aws: Mapping[str, str]) -> Any:
    return aws_client("ssm", aws)


def cfn_client(aws: Mapping[str, str]) -> Any:
    return aws_client("cloudformation", aws)


def log_messages(stream: io.StringIO) -> list[str]:
    """The messages of a log written as JSON lines (the unit tests' `logged` fixture)."""
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
