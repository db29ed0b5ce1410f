"""Bounded retries (common/retry.py): the backoff's bounds and jitter, what is logged, what is never retried, and
the deadline; and which engine and git messages count as transient."""

from __future__ import annotations

import io
import time

import pytest

from iac_runner.common.errors import ConfigError, EngineError, RunnerError
from iac_runner.common.process import Deadline
from iac_runner.common.retry import Retry, transient_reason
from tests.helpers import log_messages


class Flaky:
    """Fails `failures` times with a transient error (numbered, to tell the last from the others), then returns."""

    def __init__(self, failures: int, transient: str = "a network error (connection reset)") -> None:
        self.failures = failures
        self.transient = transient
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise EngineError(f"attempt {self.calls} failed", transient=self.transient)
        return "done"


def quick(retries: int, seconds: float = 60) -> Retry:
    return Retry(retries, Deadline(seconds), base_seconds=0.01, max_seconds=0.04)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 20.0), (9, 20.0)]
)
def test_backoff_doubles_up_to_its_cap_with_jitter_on_the_upper_half(attempt: int, ceiling: float) -> None:
    retry = Retry(10, Deadline(3600))
    waits = [retry.wait(attempt) for _ in range(2000)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    # Jitter: spread over the range (two runs of one stack must not retry in step), not one value.
    assert min(waits) < ceiling * 0.55 and max(waits) > ceiling * 0.95


def test_two_failures_then_success_with_each_retry_logged(logged: io.StringIO) -> None:
    flaky = Flaky(2)
    assert quick(2).run(flaky, "git ls-remote") == "done"
    assert flaky.calls == 3
    lines = log_messages(logged)
    assert len(lines) == 2
    for number, line in enumerate(lines, 1):
        assert line.startswith(f"git ls-remote failed with a network error (connection reset): retry {number} of 2 in ")
        assert line.endswith(" s")


def test_the_bound_holds_and_the_last_error_is_raised(logged: io.StringIO) -> None:
    flaky = Flaky(100)
    with pytest.raises(EngineError) as raised:
        quick(3).run(flaky, "reading the stack")
    assert flaky.calls == 4, "one attempt and three retries"
    assert raised.value.summary == "attempt 4 failed"
    assert len(log_messages(logged)) == 3


def test_no_retries_means_one_attempt(logged: io.StringIO) -> None:
    flaky = Flaky(1)
    with pytest.raises(EngineError):
        quick(0).run(flaky, "tofu init")
    assert flaky.calls == 1 and log_messages(logged) == []


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("Input 'size' has the wrong type."),
        EngineError("Resource Bucket failed: AccessDenied"),
        EngineError("The stack's state is locked by another run."),
    ],
)
def test_what_a_retry_cannot_fix_is_never_retried(error: RunnerError, logged: io.StringIO) -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise error

    with pytest.raises(RunnerError) as raised:
        quick(5).run(attempt, "tofu plan")
    assert raised.value is error and len(calls) == 1 and log_messages(logged) == []


def test_other_exceptions_pass_through_untouched() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        quick(5).run(attempt, "anything")
    assert len(calls) == 1


def test_no_retry_when_its_wait_would_pass_the_deadline(logged: io.StringIO) -> None:
    """Retry 1 waits 0.1-0.2 s of a 0.3 s limit; retry 2 would wait at least 0.2 s, more than is left."""
    flaky = Flaky(100)
    started = time.monotonic()
    with pytest.raises(EngineError) as raised:
        Retry(5, Deadline(0.3), base_seconds=0.2).run(flaky, "pulumi preview")
    assert time.monotonic() - started < 0.3
    assert flaky.calls == 2
    assert raised.value.summary == "attempt 2 failed"
    first, second = log_messages(logged)
    assert "retry 1 of 5" in first
    assert second.startswith("pulumi preview failed with a network error (connection reset): no retry, the time limit")


def test_a_deadline_already_past_allows_no_retry(logged: io.StringIO) -> None:
    flaky = Flaky(1)
    with pytest.raises(EngineError):
        Retry(2, Deadline(0)).run(flaky, "tofu init")
    assert flaky.calls == 1
    assert "no retry, the time limit is 0.0 s away" in log_messages(logged)[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("fatal: unable to access 'http://h/r.git/': The requested URL returned error: 503", "a server error"),
        ("fatal: unable to access 'http://h/r.git/': Empty reply from server", "a network error"),
        ("fatal: unable to access 'https://h/r.git/': Recv failure: Connection reset by peer", "a network error"),
        ("error: RPC failed; curl 18 transfer closed with outstanding read data remaining", "a network error"),
        ("fatal: unable to access 'https://h/': Could not resolve host: h", "a network error"),
        ("operation error S3: GetObject, https response error StatusCode: 503, api error ServiceUnavailable",
         "a server error"),
        ('operation error S3: ListObjectsV2, exceeded maximum number of attempts, 1, https response error '
         'StatusCode: 0, RequestID: , HostID: , request send failed, Get "http://127.0.0.1:1/state": EOF',
         "a network error"),
        ('Failed to query available provider packages: could not connect to registry.opentofu.org: Get '
         '"https://registry.opentofu.org/.well-known/terraform.json": EOF', "a network error"),
        ("An error occurred (Throttling) when calling the DescribeStacks operation: Rate exceeded", "throttling"),
        ("api error SlowDown: Please reduce your request rate.", "throttling"),
        ("dial tcp 127.0.0.1:9: connect: connection refused", "a network error"),
        ("net/http: request canceled while waiting for connection (Client.Timeout exceeded): i/o timeout",
         "a network error"),
    ],
)  # fmt: skip
def test_transient_faults_are_recognised(text: str, reason: str) -> None:
    found = transient_reason(text)
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize(
    "text",
    [
        "Error: Invalid value for input variable: size must be between 1 and 100.",
        "fatal: Authentication failed for 'https://h/r.git/'",
        "The requested URL returned error: 404",
        "api error AccessDenied: Access Denied (StatusCode: 403)",
        "fatal: unable to access 'http://127.0.0.1:5030/r.git/': The requested URL returned error: 401",
        "Error acquiring the state lock: ConditionalCheckFailedException: The conditional request failed",
        "BucketAlreadyExists: The requested bucket name is not available",
        'Error: Unsupported argument on main.tf line 3: An argument named "EOF" is not expected here.',
    ],
)
def test_what_is_not_transient(text: str) -> None:
    assert transient_reason(text) is None
