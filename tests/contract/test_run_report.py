"""The run report of the runs that do not succeed, on each backend, through the container contract: a failing
create (the structured error: summary, where, fix, the failing resource and the engine's own diagnostics, a tofu
syntax error's at its file and line), a timeout (IAC_RUNNER_TIMEOUT: timed_out, exit 3) and an interrupt (SIGTERM:
interrupted, exit 130). Every report fits docs/report.schema.json and holds no secret (Container and Running check
both). A successful create's report is checked in test_plan_conformance.py, drift's in test_drift.py."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, STACKS, Container, Result, isolate, s3_example, ssm_client, unique
from tests.helpers.faultproxy import serving
from tests.helpers.pulumi import SLOW_PY, isolate_pulumi, program
from tests.helpers.running import start
from tests.helpers.tofu import SLOW_TF, SMALL_TF, stack_files

CLOUDFORMATION = stack_files(STACKS / "s3-bucket" / "cloudformation")


def _failed(result: Result, code: int, status: str = "failed") -> dict[str, Any]:
    """The report of a run that failed with `code`; its error is the error file's."""
    assert result.returncode == code, result.log
    report: dict[str, Any] = result.report
    assert report["result"] == {"status": status, "exit_code": code}
    error = report["error"]
    assert result.error.startswith(error["summary"]), (result.error, error)
    assert error["fix"] and report["outputs"] is None
    # The phase the failure came in says so (a CloudFormation run also waits on the API between its phases).
    assert {p["result"] for p in report["phases"]} <= {"succeeded", status}, report["phases"]
    assert not result.files["values"].exists() and not result.files["secrets"].exists()
    assert "iac-runner-work-" not in json.dumps(report), "files are named in the stack's folder, not the run's view"
    return report


# -- a failing create -------------------------------------------------------------------------------------------


def test_a_tofu_syntax_error_is_a_diagnostic_at_its_file_and_line(container: Container, tmp_path: Path) -> None:
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("syntax"))
    broken = SMALL_TF + '\nresource "terraform_data" "broken" {\n  input =\n}\n'
    result = container.run("create", {"name": "x"}, secrets={"token": SENTINEL}, files={"main.tf": broken})
    report = _failed(result, 2)
    assert [(p["name"], p["result"]) for p in report["phases"]] == [("checkout", "succeeded"), ("init", "failed")]
    line = SMALL_TF.count("\n") + 3
    assert {"severity": "error", "summary": "Invalid expression", "file": "main.tf", "line": line} in report["error"][
        "diagnostics"
    ], report["error"]
    assert report["error"]["where"].startswith(f"main.tf:{line}")


#: Each engine's failure when the stack's SSM parameter is someone else's: the failing resource, and whether the
#: engine says where in the stack's files (moto's CloudFormation fails ExecuteChangeSet at once, without the stack
#: events that name the resource on AWS: tests/unit/test_cloudformation_states.py replays those).
TAKEN = {
    "opentofu": ("aws_ssm_parameter.token", "main.tf"),
    "pulumi": ("token", ""),
    "cloudformation": ("", ""),
}


@pytest.mark.parametrize("backend", sorted(TAKEN))
def test_a_failing_create_reports_the_resource_and_the_engines_diagnostics(
    backend: str, container: Container, aws: dict[str, str], stacks_repo: Path, tmp_path: Path
) -> None:
    ssm_client(aws).put_parameter(Name=s3_example.PARAMETER, Value="theirs", Type="String", Description="theirs")
    s3_example.from_repo(container, tmp_path, stacks_repo, backend, unique(f"taken-{backend}"), **aws)
    report = _failed(container.run("create", s3_example.INPUTS, secrets=s3_example.SECRETS), 1)
    assert report["phases"][-1] == {**report["phases"][-1], "name": "apply", "result": "failed"}
    assert report["changes"]["add"] >= 2
    error = report["error"]
    resource, file = TAKEN[backend]
    assert error.get("resource", "") == resource, error
    if not resource:
        assert "ParameterAlreadyExists" in error["where"], error
        return
    diagnostic = next(d for d in error["diagnostics"] if d.get("address") == resource)
    assert diagnostic["severity"] == "error" and "ParameterAlreadyExists" in diagnostic["summary"], diagnostic
    if file:
        assert diagnostic["file"] == file and diagnostic["line"] > 0, diagnostic


# -- a timeout ----------------------------------------------------------------------------------------------------


def _slow(backend: str, container: Container, aws: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """A create that outlasts its time limit by far on `backend`: its files and inputs."""
    isolate_pulumi(container, tmp_path, **aws, IAC_RUNNER_STACK_NAME=unique(f"slow-{backend}"))
    if backend == "opentofu":
        return {"files": {"main.tf": SLOW_TF}, "inputs": {"seconds": 60}}
    if backend == "pulumi":
        # Interrupted, pulumi lets a create in flight finish before it stops: the test lasts as long as this.
        return {"files": program(SLOW_PY), "inputs": {"seconds": 40}}
    return {"files": CLOUDFORMATION, "inputs": s3_example.INPUTS, "secrets": s3_example.SECRETS}


#: Seconds each create gets: enough to start changing something on a busy machine, far short of the slow create.
TIMEOUT = {"opentofu": 15, "pulumi": 20, "cloudformation": 1}


@pytest.mark.parametrize("backend", sorted(TIMEOUT))
def test_a_timeout_writes_a_timed_out_report(
    backend: str, container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    slow = _slow(backend, container, aws, tmp_path)
    if backend == "cloudformation":
        # moto answers at once: a slow API (0.5 s a call) makes the second of the deadline pass mid-run.
        with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
            proxy.delay = 0.5
            container.env["AWS_ENDPOINT_URL"] = proxy.url
            result = container.run("create", **slow, env={"IAC_RUNNER_TIMEOUT": str(TIMEOUT[backend])})
    else:
        result = container.run("create", **slow, env={"IAC_RUNNER_TIMEOUT": str(TIMEOUT[backend])})
    report = _failed(result, 3, "timed_out")
    assert "time limit" in report["error"]["summary"], report["error"]
    if backend != "cloudformation":
        assert report["phases"][-1]["result"] == "timed_out", report["phases"]


# -- an interrupt -------------------------------------------------------------------------------------------------

#: The log line that says the engine is changing something, on each backend.
CHANGING = {
    "opentofu": "terraform_data.slow: in progress",
    "pulumi": "slow: in progress",
    "cloudformation": "with a change set",
}


@pytest.mark.parametrize("backend", sorted(CHANGING))
def test_sigterm_writes_an_interrupted_report(
    backend: str, container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    slow = _slow(backend, container, aws, tmp_path)
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        if backend == "cloudformation":
            proxy.delay = 0.3  # each API call takes a while: the signal lands mid-run
            container.env["AWS_ENDPOINT_URL"] = proxy.url
        running = start(container, "create", slow["inputs"], secrets=slow.get("secrets"), files=slow["files"])
        running.wait_for(CHANGING[backend], timeout=120)
        running.proc.send_signal(signal.SIGTERM)
        result = running.result()
    report = _failed(result, 130, "interrupted")
    assert "interrupted by SIGTERM" in report["error"]["summary"], report["error"]
    if backend != "cloudformation":
        assert report["phases"][-1] == {**report["phases"][-1], "name": "apply", "result": "interrupted"}
