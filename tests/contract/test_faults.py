"""Transient faults and phase limits, made to happen for real through a loopback proxy (tests/helpers/faultproxy.py)
in front of the git server and moto: a fault that goes away is retried (each retry logged with its reason and
wait) and the run succeeds; one that stays ends the run after IAC_RUNNER_RETRIES retries with the last error; a
change that may have started is never sent again; a phase that stalls ends at its own limit (exit 3, naming the
phase), long before the run's."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    SENTINEL,
    STACKS,
    Container,
    Result,
    gitserver,
    isolate,
    make_repo,
    s3_client,
    s3_example,
    unique,
)
from tests.helpers.faultproxy import Fault, FaultProxy, serving
from tests.helpers.pulumi import PASSPHRASE, SMALL_PY, program
from tests.helpers.tofu import SMALL_TF

TOKEN = "tkn-faults-4e1d90b7"
CFN_FILES = {
    "template.yaml": (STACKS / "s3-bucket" / "cloudformation" / "template.yaml").read_text(),
    "iac-runner.yaml": "secret_outputs: [tokenParameter]\n",
}
SECRETS = {"apiToken": SENTINEL}
#: How often the engines' AWS SDK tries one request to the S3 state backend itself (tofu's `max_retries` default;
#: the SDK's default for pulumi's gocloud s3blob).
TOFU_S3_ATTEMPTS, PULUMI_S3_ATTEMPTS = 5, 3
RETRY = re.compile(
    r"(?P<doing>[^\n]*?) failed with (?P<reason>[^\n]+): retry (?P<n>\d+) of (?P<of>\d+) in (?P<wait>[\d.]+) s"
)


def retries(result: Result) -> list[dict[str, str]]:
    """The retries the run logged: what failed, why, which retry, and the wait."""
    return [m.groupdict() for m in RETRY.finditer(result.log)]


def assert_retried(result: Result, count: int, reason: str, bound: int = 2) -> None:
    found = retries(result)
    assert [int(r["n"]) for r in found] == list(range(1, count + 1)), result.log
    for retry in found:
        assert reason in retry["reason"], retry
        assert int(retry["of"]) == bound
        # Exponential backoff with jitter: retry n waits between half and all of 2**(n-1) s.
        assert 2 ** (int(retry["n"]) - 1) / 2 <= float(retry["wait"]) <= 2 ** (int(retry["n"]) - 1), retry


# -- git ------------------------------------------------------------------------------------------------------


@pytest.fixture
def git_proxy(tmp_path: Path) -> Iterator[FaultProxy]:
    """The stacks repository on the loopback git server (token auth), behind the fault proxy."""
    make_repo(tmp_path / "repos" / "stacks.git")
    with gitserver.serving(tmp_path / "repos", TOKEN) as server, serving(f"http://127.0.0.1:{server.port}") as proxy:
        yield proxy


def from_git(container: Container, aws: dict[str, str], proxy: FaultProxy, **extra: str) -> None:
    container.env.update(
        {**aws, "IAC_RUNNER_SOURCE_URL": f"{proxy.url}/stacks.git", "IAC_RUNNER_SOURCE_TOKEN": TOKEN,
         "IAC_RUNNER_SOURCE_PATH": "stacks/s3-bucket/cloudformation", "IAC_RUNNER_STACK_NAME": unique("git"), **extra}
    )  # fmt: skip


@pytest.mark.parametrize(("fault", "reason"), [("503", "a server error"), ("reset", "a network error")])
def test_git_faults_that_go_away_are_retried(
    fault: Fault, reason: str, container: Container, aws: dict[str, str], git_proxy: FaultProxy
) -> None:
    from_git(container, aws, git_proxy)
    git_proxy.fail_next(2, fault)
    created = container.run("create", s3_example.INPUTS, secrets=SECRETS)
    created.assert_ok()
    assert_retried(created, 2, reason)
    assert all(r["doing"].endswith("git fetch") for r in retries(created))
    assert len(git_proxy.faulted()) == 2
    assert created.json("values")["bucket"] == s3_example.BUCKET


def test_a_git_fault_that_stays_ends_the_run_after_the_bound(
    container: Container, aws: dict[str, str], git_proxy: FaultProxy
) -> None:
    from_git(container, aws, git_proxy, IAC_RUNNER_RETRIES="3")
    git_proxy.fail_next(100, "503")
    result = container.run("create", s3_example.INPUTS, secrets=SECRETS)
    assert result.returncode == 2, result.log
    assert_retried(result, 3, "a server error", bound=3)
    assert git_proxy.count() == 4, "one attempt and three retries"
    assert result.error.startswith(f"The git repository {git_proxy.url}/stacks.git could not be reached.")
    assert "returned error: 503" in result.error, "the last error is reported"
    assert s3_client(aws).list_buckets()["Buckets"] == [], "nothing was changed"


def test_a_refused_token_is_not_retried(container: Container, aws: dict[str, str], git_proxy: FaultProxy) -> None:
    from_git(container, aws, git_proxy, IAC_RUNNER_SOURCE_TOKEN="tkn-wrong-70c1d2")
    result = container.run("create", s3_example.INPUTS, secrets=SECRETS)
    assert result.returncode == 2, result.log
    assert "Git refused the credentials" in result.error
    assert retries(result) == []


# -- the CloudFormation API -----------------------------------------------------------------------------------


@pytest.fixture
def cfn_proxy(container: Container, aws: dict[str, str], tmp_path: Path) -> Iterator[FaultProxy]:
    """moto behind the fault proxy, the runner's only way to it."""
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        (tmp_path / "tmp").mkdir()
        container.env.update({**aws, "AWS_ENDPOINT_URL": proxy.url, "IAC_RUNNER_STACK_NAME": unique("cfn"),
                              "TMPDIR": str(tmp_path / "tmp")})  # fmt: skip
        yield proxy


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("503", "an answer that is not the API's"), ("throttle", "throttling (Throttling)"), ("reset", "a network error")],
)
def test_cloudformation_faults_that_go_away_are_retried(
    fault: Fault, reason: str, container: Container, aws: dict[str, str], cfn_proxy: FaultProxy
) -> None:
    cfn_proxy.fail_next(2, fault)
    created = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES)
    created.assert_ok()
    assert_retried(created, 2, reason)
    assert len(cfn_proxy.faulted()) == 2
    assert created.json("values")["bucket"] == s3_example.BUCKET


@pytest.mark.parametrize(
    "case",
    [
        ("throttle", 1, "CloudFormation failed while reading the stack: Rate exceeded"),
        # Before anything changed, an endpoint that never answers as the API does is the job's network path.
        ("503", 2, "The AWS endpoint gave no answer the SDK can read while reading the stack."),
        ("reset", 2, "The AWS endpoint could not be reached while reading the stack."),
    ],
)
def test_a_cloudformation_fault_that_stays_ends_the_run_after_the_bound(
    case: tuple[Fault, int, str], container: Container, aws: dict[str, str], cfn_proxy: FaultProxy
) -> None:
    fault, code, error = case
    cfn_proxy.fail_next(100, fault)
    result = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES)
    assert result.returncode == code, result.log
    assert len(retries(result)) == 2, result.log
    assert cfn_proxy.count() == 3, "one attempt and two retries"
    assert result.error.startswith(error), result.error
    assert s3_client(aws).list_buckets()["Buckets"] == [], "nothing was changed"


def test_no_retries_with_retries_zero(container: Container, aws: dict[str, str], cfn_proxy: FaultProxy) -> None:
    cfn_proxy.fail_next(1, "throttle")
    result = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES,
                           env={"IAC_RUNNER_RETRIES": "0"})  # fmt: skip
    assert result.returncode == 1, result.log
    assert retries(result) == [] and cfn_proxy.count() == 1
    assert "Rate exceeded" in result.error


@pytest.mark.parametrize("fault", ["throttle", "503", "reset"])
def test_throttled_polls_never_execute_the_change_set_again(
    fault: Fault, container: Container, aws: dict[str, str], cfn_proxy: FaultProxy
) -> None:
    cfn_proxy.fail_next(2, fault, after="ExecuteChangeSet")
    created = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES)
    created.assert_ok()
    assert len(retries(created)) == 2, created.log
    assert cfn_proxy.count("ExecuteChangeSet") == 1


def test_an_execution_whose_answer_is_lost_is_not_sent_again(
    container: Container, aws: dict[str, str], cfn_proxy: FaultProxy
) -> None:
    """ExecuteChangeSet reaches CloudFormation, which starts the change; the answer is lost. The runner reads the
    change set's ExecutionStatus instead of sending it again, and waits for the change to finish."""
    cfn_proxy.fail_next(1, "drop", matching="ExecuteChangeSet")
    created = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES)
    created.assert_ok()
    assert "executing the change set failed with a network error" in created.log
    assert cfn_proxy.count("ExecuteChangeSet", reached_server=True) == 1
    assert created.json("values")["bucket"] == s3_example.BUCKET


def test_a_throttled_execution_is_sent_again_once_it_is_known_not_to_have_started(
    container: Container, aws: dict[str, str], cfn_proxy: FaultProxy
) -> None:
    cfn_proxy.fail_next(1, "throttle", matching="ExecuteChangeSet")
    created = container.run("create", s3_example.INPUTS, secrets=SECRETS, files=CFN_FILES)
    created.assert_ok()
    assert "executing the change set failed with throttling" in created.log
    assert cfn_proxy.count("ExecuteChangeSet") == 2
    assert cfn_proxy.count("ExecuteChangeSet", reached_server=True) == 1


# -- state backends ---------------------------------------------------------------------------------------------


@pytest.fixture
def s3_proxy(container: Container, aws: dict[str, str], tmp_path: Path) -> Iterator[FaultProxy]:
    """moto's S3 behind the fault proxy, as the stack's state backend (AWS_ENDPOINT_URL is how the engines find
    it)."""
    s3_client(aws).create_bucket(Bucket="state")
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        (tmp_path / "tmp").mkdir()
        container.env.update(
            {**aws, "AWS_ENDPOINT_URL": proxy.url, "IAC_RUNNER_STACK_NAME": unique("state"),
             "IAC_RUNNER_STATE_URL": "s3://state/faults", "TMPDIR": str(tmp_path / "tmp")}
        )  # fmt: skip
        yield proxy


def own_backend(proxy: FaultProxy) -> str:
    """A backend block of the stack's own: moto's S3 through the proxy, the AWS SDK's own retries off
    (`max_retries = 1` is one attempt), so every fault reaches tofu, and the runner."""
    return f"""terraform {{
  backend "s3" {{
    bucket                      = "state"
    key                         = "own/terraform.tfstate"
    region                      = "us-east-1"
    endpoints                   = {{ s3 = "{proxy.url}" }}
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    max_retries                 = 1
  }}
}}
"""


def test_opentofu_s3_state_faults_are_retried_by_the_sdk(container: Container, s3_proxy: FaultProxy) -> None:
    """IAC_RUNNER_STATE_URL=s3://: tofu's S3 backend (the AWS SDK for Go) retries a request that met a fault
    itself (up to 5 attempts, tofu's `max_retries`), before the runner sees a failure: that is what saves a state
    write after an apply, which the runner could not do again."""
    s3_proxy.fail_next(2, "503")
    created = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files={"main.tf": SMALL_TF})
    created.assert_ok()
    assert retries(created) == []
    first = [s for s in s3_proxy.requests if s.what == s3_proxy.requests[0].what][:3]
    assert [s.fault for s in first] == ["503", "503", ""], "the same request, tried again by the engine"


@pytest.mark.parametrize(("fault", "reason"), [("503", "a server error"), ("reset", "a network error")])
def test_opentofu_state_backend_faults_that_go_away_are_retried(
    fault: Fault, reason: str, container: Container, s3_proxy: FaultProxy
) -> None:
    s3_proxy.fail_next(2, fault)
    files = {"main.tf": SMALL_TF, "backend.tf": own_backend(s3_proxy)}
    created = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=files,
                            env={"IAC_RUNNER_STATE_URL": None})  # fmt: skip
    created.assert_ok()
    assert_retried(created, 2, reason)
    assert all(r["doing"].endswith("tofu init") for r in retries(created)), created.log
    assert created.json("values")["name"] == "faults"


def test_an_opentofu_state_backend_fault_that_stays_ends_the_run_after_the_bound(
    container: Container, s3_proxy: FaultProxy
) -> None:
    s3_proxy.fail_next(100, "503")
    files = {"main.tf": SMALL_TF, "backend.tf": own_backend(s3_proxy)}
    result = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=files,
                           env={"IAC_RUNNER_STATE_URL": None})  # fmt: skip
    assert result.returncode == 1, result.log
    assert_retried(result, 2, "a server error")
    assert s3_proxy.count() == 3, "one attempt and two retries"
    assert result.error.startswith("tofu init failed with a server error"), result.error


def test_a_plan_that_keeps_failing_is_tried_retries_plus_one_times(container: Container, s3_proxy: FaultProxy) -> None:
    """The state lock cannot be taken (a 503 each time): the plan and apply is tried 1 + IAC_RUNNER_RETRIES times
    in all, not retried within its retries."""
    s3_proxy.fail_next(100, "503", matching=".tflock")
    files = {"main.tf": SMALL_TF, "backend.tf": own_backend(s3_proxy)}
    result = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=files,
                           env={"IAC_RUNNER_STATE_URL": None})  # fmt: skip
    assert result.returncode == 1, result.log
    assert_retried(result, 2, "a server error")
    assert all(r["doing"].endswith("tofu plan and apply") for r in retries(result)), result.log
    assert s3_proxy.count("PUT /state/own/terraform.tfstate.tflock") == 3
    assert result.error.startswith("tofu plan failed: Error acquiring the state lock."), result.error


@pytest.mark.slow  # the SDK's own backoff between its 5 attempts: about 20 s for each failed init
def test_opentofu_s3_state_faults_that_outlast_the_sdk_are_retried(container: Container, s3_proxy: FaultProxy) -> None:
    s3_proxy.fail_next(2 * TOFU_S3_ATTEMPTS, "503")
    created = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files={"main.tf": SMALL_TF})
    created.assert_ok()
    assert_retried(created, 2, "a server error")
    assert all(r["doing"].endswith("tofu init") for r in retries(created)), created.log


@pytest.mark.parametrize("fault", ["503", "reset"])
def test_pulumi_s3_state_faults_are_retried(fault: Fault, container: Container, s3_proxy: FaultProxy) -> None:
    """Pulumi's state backend (gocloud's s3blob, the AWS SDK for Go) tries a request 3 times itself; a fault that
    outlasts that is tried again by the runner."""
    container.env["PULUMI_CONFIG_PASSPHRASE"] = PASSPHRASE
    files = program(SMALL_PY)
    s3_proxy.fail_next(2, fault)
    absorbed = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=files)
    absorbed.assert_ok()
    assert retries(absorbed) == []
    s3_proxy.fail_next(2 * PULUMI_S3_ATTEMPTS, fault)
    again = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=files)
    again.assert_ok()
    assert_retried(again, 2, "a server error" if fault == "503" else "a network error")
    assert all(r["doing"].endswith("pulumi stack select") for r in retries(again)), again.log
    assert "no changes" in again.log


def test_a_pulumi_state_backend_fault_that_stays_ends_the_run_after_the_bound(
    container: Container, s3_proxy: FaultProxy
) -> None:
    s3_proxy.fail_next(1000, "503")
    result = container.run("create", {"name": "faults"}, secrets={"token": SENTINEL}, files=program(SMALL_PY),
                           env={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})  # fmt: skip
    assert result.returncode == 1, result.log
    assert_retried(result, 2, "a server error")
    assert s3_proxy.count() == 3 * PULUMI_S3_ATTEMPTS
    assert result.error.startswith("pulumi failed while selecting the stack"), result.error
    assert "StatusCode: 503" in result.error


# -- phase limits -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def stalled_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung host, a TLS handshake that never ends)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_stalled_checkout_ends_at_its_own_limit(
    container: Container, aws: dict[str, str], git_proxy: FaultProxy
) -> None:
    from_git(container, aws, git_proxy, IAC_RUNNER_CHECKOUT_TIMEOUT="2", IAC_RUNNER_TIMEOUT="600",
             IAC_RUNNER_REPORT_FILE="report.json")  # fmt: skip
    git_proxy.delay = 120
    started = time.monotonic()
    result = container.run("create", s3_example.INPUTS, secrets=SECRETS)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.log
    assert elapsed < 30, "the checkout's limit, not the run's"
    assert result.error.startswith("The checkout phase exceeded its time limit of 2 s while running git fetch.")
    assert "Where: IAC_RUNNER_CHECKOUT_TIMEOUT" in result.error
    assert "Fix: Check the network path to the git host" in result.error
    assert result.out_dir is not None
    report = json.loads((result.out_dir / "report.json").read_text())
    assert [(p["name"], p["result"]) for p in report["phases"]] == [("checkout", "timed_out")]
    assert report["result"] == {"status": "timed_out", "exit_code": 3}


def test_a_stalled_init_ends_at_its_own_limit(container: Container, tmp_path: Path) -> None:
    """A provider that is not in the offline mirror, from a network mirror that never answers."""
    stack = 'terraform {\n  required_providers {\n    stalled = { source = "iac-runner-tests/stalled" }\n  }\n}\n'
    with stalled_server() as port:
        tfrc = tmp_path / "mirror.tfrc"
        tfrc.write_text(f'provider_installation {{\n  network_mirror {{ url = "https://127.0.0.1:{port}/" }}\n}}\n')
        isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("init"), TF_CLI_CONFIG_FILE=str(tfrc),
                IAC_RUNNER_INIT_TIMEOUT="2", IAC_RUNNER_TIMEOUT="600")  # fmt: skip
        started = time.monotonic()
        result = container.run("create", {}, files={"main.tf": stack})
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.log
    assert elapsed < 30, "init's limit, not the run's"
    assert result.error.startswith("The init phase exceeded its time limit of 2 s while initialising the stack")
    assert "Where: IAC_RUNNER_INIT_TIMEOUT" in result.error
    assert "Fix: Check the network path to the provider registry (or mirror) and the state backend" in result.error
