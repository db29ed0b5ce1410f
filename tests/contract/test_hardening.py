"""Faults, signals, limits and hostile input through the container contract, as a platform team meets them: each
case once ended wrong (a lost signal, a stack that never converged, a secret file overwritten, a link out of the
repository); now each ends with the contract's exit code, a clear ERROR_FILE, and a rerun that converges."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, STACKS, Container, base_env, cfn_client, isolate, s3_example
from tests.helpers.faultproxy import serving
from tests.helpers.tofu import SMALL_TF

TEMPLATE = (STACKS / "s3-bucket" / "cloudformation" / "template.yaml").read_text()
FILES = {"template.yaml": TEMPLATE, "iac-runner.yaml": "secret_outputs: [tokenParameter]\n"}
SECRETS = {"apiToken": SENTINEL}


def stacks_named(cfn: Any, name: str) -> list[dict[str, Any]]:
    return [
        s for s in cfn.describe_stacks()["Stacks"] if s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"
    ]


def test_error_file_equal_to_the_values_file_is_refused(container: Container, aws: dict[str, str]) -> None:
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "same-file"})
    result = container.run(
        "create", s3_example.INPUTS, secrets=SECRETS, files=FILES, env={"ERROR_FILE": "outputs.json"}
    )
    assert result.returncode == 2
    text = (result.out_dir / "outputs.json").read_text() if result.out_dir else ""
    assert "ERROR_FILE and OUTPUTS_FILE name the same file" in text
    assert stacks_named(cfn_client(aws), "same-file") == [], "nothing was changed"


def test_a_committed_symlink_out_of_the_repository_is_refused(container: Container, aws: dict[str, str]) -> None:
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "links", "IAC_RUNNER_SOURCE_PATH": "stack"})
    scripts = container.root / "links"
    (scripts / "stack").mkdir(parents=True)
    (scripts / "stack" / "template.yaml").write_text(TEMPLATE)
    (scripts / "stack" / "secrets").symlink_to("/etc")
    env = {**container.env, "SCRIPTS_DIRECTORY": str(scripts), "ACTION": "create", "OUTPUTS_FILE": "o.json",
           "SECRET_OUTPUTS_FILE": "s.json", "ERROR_FILE": "e.txt", "IAC_RUNNER_SECRET_apiToken": SENTINEL,
           "RESOURCE_INPUTS_FILE": "i.json"}  # fmt: skip
    (scripts / "i.json").write_text(json.dumps(s3_example.INPUTS))
    runner = [sys.executable, "-m", "iac_runner", "container"]
    done = subprocess.run(runner, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    error = (scripts / "e.txt").read_text()
    assert "symlink that leads out of the repository: stack/secrets" in error


def test_a_stack_left_in_review_converges(container: Container, aws: dict[str, str]) -> None:
    """A run killed between creating and executing its change set leaves an empty stack REVIEW_IN_PROGRESS; the
    next create deletes it and creates the stack once (not a second stack of the same name)."""
    cfn = cfn_client(aws)
    cfn.create_change_set(
        StackName="in-review", ChangeSetName="killed", ChangeSetType="CREATE", TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "bucket", "ParameterValue": "contract-bucket"},
                    {"ParameterKey": "apiToken", "ParameterValue": SENTINEL}],
    )  # fmt: skip
    assert [s["StackStatus"] for s in stacks_named(cfn, "in-review")] == ["REVIEW_IN_PROGRESS"]
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "in-review"})

    created = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=FILES)
    created.assert_ok()
    assert "REVIEW_IN_PROGRESS: deleting it" in created.log
    assert [s["StackStatus"] for s in stacks_named(cfn, "in-review")] == ["CREATE_COMPLETE"]
    again = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=FILES)
    again.assert_ok()
    assert len(stacks_named(cfn, "in-review")) == 1
    container.run("destroy", s3_example.INPUTS, secrets=SECRETS, files=FILES).assert_ok()
    assert stacks_named(cfn, "in-review") == []


def test_destroy_of_a_stack_left_in_review(container: Container, aws: dict[str, str]) -> None:
    cfn = cfn_client(aws)
    cfn.create_change_set(
        StackName="review-gone", ChangeSetName="killed", ChangeSetType="CREATE", TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "bucket", "ParameterValue": "x-bucket"},
                    {"ParameterKey": "apiToken", "ParameterValue": SENTINEL}],
    )  # fmt: skip
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "review-gone"})
    container.run("destroy", s3_example.INPUTS, secrets=SECRETS, files=FILES).assert_ok()
    assert stacks_named(cfn, "review-gone") == []


def big_template(resources: int) -> str:
    lines = ["Resources:"]
    for index in range(resources):
        lines += [f"  Topic{index}:", "    Type: AWS::SNS::Topic", "    Properties:", f"      TopicName: t{index}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seconds", [1])
def test_the_deadline_stops_cloudformation_before_it_changes_anything(
    seconds: int, container: Container, aws: dict[str, str]
) -> None:
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "late", "IAC_RUNNER_TIMEOUT": str(seconds)})
    result = container.run("create", {}, files={"template.yaml": big_template(60)})
    assert result.returncode == 3, result.log
    assert "time limit" in result.error
    assert stacks_named(cfn_client(aws), "late") == [], "no change after the deadline"


def catching_sigterm(proc: subprocess.Popen[str]) -> None:
    """Wait for the earliest moment the runner can catch SIGTERM (its handler is installed): before it, the
    interpreter itself is still starting and the kernel's default action applies, as for any program."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.001)
    pytest.fail("the runner never installed its SIGTERM handler")


def _start(container: Container, env: dict[str, str], inputs: dict[str, Any]) -> tuple[subprocess.Popen[str], Path]:
    container.runs += 1
    scripts = container.root / f"signal{container.runs}"
    scripts.mkdir()
    for name, text in FILES.items():
        (scripts / name).write_text(text)
    (scripts / "inputs.json").write_text(json.dumps(inputs))
    contract = {"ACTION": "create", "SCRIPTS_DIRECTORY": str(scripts), "RESOURCE_INPUTS_FILE": "inputs.json",
                "OUTPUTS_FILE": "outputs.json", "SECRET_OUTPUTS_FILE": "secret-outputs.json", "ERROR_FILE": "error.txt",
                "IAC_RUNNER_SECRET_apiToken": SENTINEL}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "iac_runner", "container"],
        env={**container.env, **env, **contract},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, scripts


@pytest.mark.parametrize("after", [0.0, 0.3, 0.8, 1.5, 2.5])
def test_sigterm_at_any_moment_of_a_cloudformation_run(after: float, container: Container, aws: dict[str, str]) -> None:
    """SIGTERM at start-up, during the API calls (slowed by the proxy so the signal lands in one) or while polling:
    always exit 130 with an error file that says so and what state the stack is in; a rerun converges."""
    name = f"signalled-{int(after * 10)}"
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        proxy.delay = 0.15
        container.env.update({**aws, "AWS_ENDPOINT_URL": proxy.url, "IAC_RUNNER_STACK_NAME": name})
        proc, scripts = _start(container, {}, s3_example.INPUTS)
        catching_sigterm(proc)
        time.sleep(after)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        error = (scripts / "error.txt").read_text() if (scripts / "error.txt").exists() else ""
        if proc.returncode == 0:
            # The run finished before the signal: then the signal came after its work, and it still says so.
            pytest.fail(f"exit 0 although SIGTERM was sent after {after} s:\n{stderr}")
        assert proc.returncode == 130, stderr
        assert "interrupted by SIGTERM" in error, stderr
        assert SENTINEL not in error + stderr
        assert not (scripts / "outputs.json").exists()
        proxy.delay = 0
        rerun = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=FILES)
        rerun.assert_ok()
        assert rerun.json("values")["bucket"] == s3_example.BUCKET
    cfn = cfn_client(aws)
    assert [s["StackStatus"] for s in stacks_named(cfn, name)] in (["CREATE_COMPLETE"], ["UPDATE_COMPLETE"])


def test_the_endpoint_dying_while_the_stack_changes_is_an_engine_failure(
    container: Container, aws: dict[str, str]
) -> None:
    """Once the change set is executing, a lost endpoint means "changed, outcome unknown" (exit 1), not bad
    configuration (exit 2); the rerun converges."""
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        container.env.update({**aws, "AWS_ENDPOINT_URL": proxy.url, "IAC_RUNNER_STACK_NAME": "endpoint-dies",
                              "IAC_RUNNER_RETRIES": "0"})  # fmt: skip
        proc, scripts = _start(container, {}, s3_example.INPUTS)
        deadline = time.monotonic() + 60
        while proxy.count("ExecuteChangeSet") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.down = True
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, stderr
        error = (scripts / "error.txt").read_text()
        assert "state is not known to this run" in error
        proxy.down = False
        container.run("create", s3_example.INPUTS, secrets=SECRETS, files=FILES).assert_ok()


HUGE_LINE_TF = r"""
variable "big" { type = string }
resource "terraform_data" "noisy" {
  provisioner "local-exec" {
    command     = "printf '%s\\n' \"$BIG\"; exit 1"
    environment = { BIG = var.big }
  }
}
"""


def test_a_huge_engine_line_is_cut_in_the_log_and_the_error_file(container: Container, tmp_path: Path) -> None:
    """An engine that prints a 100 kB line (here a provisioner echoing an input) does not flood the job's log or
    the error file the orchestrator shows."""
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME="huge")
    result = container.run("create", {"big": "x" * 100_000}, files={"main.tf": HUGE_LINE_TF})
    assert result.returncode == 1, result.log
    assert "x" * 1000 in result.log, "the line is shown, cut"
    assert max(len(line) for line in result.log.splitlines()) < 10_000
    assert len(result.error) < 20_000


def test_a_sigterm_before_anything_is_set_up(tmp_path: Path) -> None:
    """The signal comes as soon as the runner can catch it, before it has read its configuration: exit 130 and
    the error file, not a bare 143."""
    scripts = tmp_path / "early"
    scripts.mkdir()
    contract = {"ACTION": "create", "SCRIPTS_DIRECTORY": str(scripts), "OUTPUTS_FILE": "o.json",
                "SECRET_OUTPUTS_FILE": "s.json", "ERROR_FILE": "e.txt", "IAC_RUNNER_STACK_NAME": "early"}  # fmt: skip
    env = base_env(contract)
    proc = subprocess.Popen(
        [sys.executable, "-m", "iac_runner", "container"], env=env, stderr=subprocess.PIPE, text=True
    )
    catching_sigterm(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGTERM" in (scripts / "e.txt").read_text()


def test_a_secret_too_short_to_mask_is_named_in_a_warning(container: Container, tmp_path: Path) -> None:
    """Secrets under 6 characters are not searched for in free text (they would mask ordinary words): the run
    says so, and the value still goes to the secrets file only."""
    isolate(container, tmp_path, IAC_RUNNER_STACK_NAME="short-secret")
    result = container.run("create", {"name": "n"}, secrets={"token": "ab12"}, files={"main.tf": SMALL_TF})
    result.assert_ok()
    assert "secret input 'token' is shorter than 6 characters" in result.log
    assert result.json("secrets") == {"token": "ab12"} and "ab12" not in json.dumps(result.json("values"))
