"""The CloudFormation API as the backend uses it: one botocore client per run, every call through `Api.call` —
bounded retries of transient faults (throttling, a 5xx, a dropped connection) with each retry logged, and
botocore's exceptions turned into the runner's errors. The stack's events stream as progress.

botocore's own retries are off: they are invisible and would re-send a change set's execution after an ambiguous
failure. Calls that change something are sent once (`retry=False`); their caller finds out what happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from iac_runner.common import heap
from iac_runner.common.errors import ConfigError, EngineError, RunnerError
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.common.retry import Retry

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.session import Session
    from mypy_boto3_cloudformation import CloudFormationClient

# Polling: start fast so short operations finish fast, back off while nothing happens.
POLL_FIRST = 0.5
POLL_MAX = 5.0

_CREDENTIAL_CODES = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
                     "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException", "AuthFailure"}  # fmt: skip
_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
               "ThrottledException", "SlowDown", "RequestThrottled"}  # fmt: skip


def region() -> str | None:
    """The AWS region as the client resolves it (for what needs it without a client: cfn-lint in `validate`)."""
    return _region(_session())


def client() -> CloudFormationClient:
    """The run's one CloudFormation client; its region is `client.meta.region_name`.

    botocore's own session, not boto3's: boto3 adds nothing to a CloudFormation client but its import (s3transfer,
    resource models) and a second session, ~40 ms of an unchanged create that takes ~0.3 s. The client, botocore's
    modules and models live as long as the run: the collector leaves them alone (`heap.lasting`)."""
    with heap.lasting():
        made = _client()
    return cast("CloudFormationClient", made)


def _client() -> BaseClient:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError

    session = _session()
    try:
        return session.create_client(
            "cloudformation",
            region_name=_region(session),
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60),
        )
    except NoRegionError:
        raise ConfigError(
            "No AWS region is set for CloudFormation.",
            where="environment (AWS_REGION / AWS_DEFAULT_REGION)",
            fix="Set AWS_REGION, e.g. AWS_REGION=us-east-1.",
        ) from None
    except ValueError as exc:  # botocore's "Invalid endpoint"
        raise ConfigError(
            f"The AWS endpoint is not a valid URL: {exc}.",
            where=f"AWS_ENDPOINT_URL={os.environ.get('AWS_ENDPOINT_URL', '')}",
            fix="Give a URL like https://cloudformation.us-east-1.amazonaws.com or http://127.0.0.1:5000 (an "
            "emulator), or unset AWS_ENDPOINT_URL for AWS itself.",
        ) from None
    except BotoCoreError as exc:
        raise _profile_error(exc) from None


def _session() -> Session:
    from botocore.session import Session

    return Session()


def _region(session: Session) -> str | None:
    """botocore's own resolution (profile, AWS_DEFAULT_REGION), then AWS_REGION (which older botocore ignores)."""
    from botocore.exceptions import BotoCoreError

    try:
        found: str | None = session.get_config_variable("region")
    except BotoCoreError as exc:
        raise _profile_error(exc) from None
    return found or os.environ.get("AWS_REGION")


def _profile_error(exc: Exception) -> ConfigError:
    return ConfigError(
        f"The AWS configuration cannot be loaded: {exc}.",
        where="environment (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)",
        fix="Name a profile that exists in the AWS config files, or unset AWS_PROFILE and pass credentials as "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.",
    )


class Api:
    """The client, the run's deadline and retries, and whether a change may have begun (then a lost connection is
    an engine failure with an unknown outcome, not bad configuration)."""

    def __init__(self, cfn: CloudFormationClient, deadline: Deadline, retries: int) -> None:
        self.cfn = cfn
        self.deadline = deadline
        self.retry = Retry(retries, deadline)
        self.changing = False

    @property
    def region(self) -> str:
        return self.cfn.meta.region_name

    def call(self, method: str, doing: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """`cfn.<method>(**kwargs)`, with the runner's errors; transient faults tried again when `retry`."""
        function = getattr(self.cfn, method)

        def attempt() -> Any:
            with self.errors(doing):
                return function(**kwargs)

        return self.retry.run(attempt, doing) if retry else attempt()

    def pages(self, method: str, doing: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The pages of a paginated call, each page a call of its own (and retried as one)."""
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {**kwargs, **({"NextToken": token} if token else {})}
            page: dict[str, Any] = self.call(method, doing, **arguments)
            yield page
            token = page.get("NextToken")
            if not token:
                return

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """botocore's exceptions as the runner's: credentials and endpoints are configuration (exit 2) until a
        change may have begun; throttling, 5xx and dropped connections are marked transient."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )
        from botocore.parsers import ResponseParserError

        try:
            yield
        except NoCredentialsError:
            raise ConfigError(
                f"No AWS credentials were found while {doing}.",
                where="environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)",
                fix="Map the cloud account's credentials into the job (credentials_config) or set AWS_PROFILE.",
            ) from None
        except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
            raise self._lost(doing, exc) from None
        except ResponseParserError as exc:
            # Not the API's answer: the error page of a proxy or load balancer in between (envoy's plain-text 503).
            raise self._lost(doing, exc, unreadable=True) from None
        except ClientError as exc:
            raise _client_error(exc, doing) from None
        except BotoCoreError as exc:
            raise EngineError(
                f"The AWS SDK failed while {doing}: {exc}",
                fix="Check the AWS configuration of the job (AWS_* variables) and run again.",
            ) from None

    def _lost(self, doing: str, exc: Exception, *, unreadable: bool = False) -> RunnerError:
        endpoint = str(getattr(exc, "kwargs", {}).get("endpoint_url", "")) or os.environ.get("AWS_ENDPOINT_URL", "")
        reason = "an answer that is not the API's (a proxy's error page?)" if unreadable else "a network error"
        reason += f" ({type(exc).__name__})"
        if self.changing:
            return EngineError(
                f"The connection to CloudFormation was lost while {doing}; the stack was being changed, so its "
                "state is not known to this run.",
                where=endpoint or "the CloudFormation endpoint",
                fix="Check the stack in CloudFormation, then run again: the next run waits for an operation still "
                "running and converges.",
                transient=reason,
            )
        return ConfigError(
            f"The AWS endpoint {'gave no answer the SDK can read' if unreadable else 'could not be reached'} while "
            f"{doing}.",
            where=endpoint,
            fix="Check AWS_ENDPOINT_URL / AWS_REGION and the network path to AWS.",
            transient=reason,
        )


def _client_error(exc: Any, doing: str) -> RunnerError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", str(exc))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _CREDENTIAL_CODES:
        return ConfigError(
            f"AWS rejected the credentials while {doing}: {message}",
            where=f"AWS error {code}",
            fix="Check the credentials mapped into the job and that they may use CloudFormation.",
        )
    transient = "throttling" if code in _THROTTLING else f"a server error ({status})" if status >= 500 else ""
    return EngineError(
        f"CloudFormation failed while {doing}: {message}",
        where=f"AWS error {code}",
        fix="Act on the error above (permissions, quotas, the stack's state), then run again.",
        transient=f"{transient} ({code})" if transient else "",
    )


def is_missing_stack(error: RunnerError) -> bool:
    return "does not exist" in error.summary


class Poller:
    """Sleeps a short, growing interval between polls until the deadline; activity resets it."""

    def __init__(self, deadline: Deadline, doing: str) -> None:
        self.deadline = deadline
        self.doing = doing
        self.interval = POLL_FIRST

    def sleep(self, activity: bool = False) -> None:
        self.deadline.check(self.doing)
        if activity:
            self.interval = POLL_FIRST
        time.sleep(min(self.interval, max(self.deadline.remaining(), 0)))
        self.interval = min(self.interval * 1.5, POLL_MAX)
        self.deadline.check(self.doing)


class Events:
    """Streams a stack's events as they arrive, oldest first, each once; failed resources are kept."""

    def __init__(self, api: Api, stack_id: str) -> None:
        self.api = api
        self.stack_id = stack_id
        self.seen: set[str] = set()
        #: (logical id, type, reason) of each resource that failed.
        self.failures: list[tuple[str, str, str]] = []

    def mark_existing(self) -> None:
        found = self.api.call("describe_stack_events", "reading stack events", StackName=self.stack_id)
        self.seen.update(event["EventId"] for event in found.get("StackEvents", []))

    def poll(self) -> int:
        fresh = []
        for page in self.api.pages("describe_stack_events", "reading stack events", StackName=self.stack_id):
            events = page.get("StackEvents", [])
            new = [e for e in events if e["EventId"] not in self.seen]
            fresh.extend(new)
            if len(new) < len(events):
                break
        for event in reversed(fresh):
            self.seen.add(event["EventId"])
            status = event.get("ResourceStatus", "")
            reason = event.get("ResourceStatusReason", "")
            log.resource(event.get("LogicalResourceId", "?"), status, reason, type=event.get("ResourceType", ""))
            if status.endswith("FAILED") and reason and "cancelled" not in reason.lower():
                self.failures.append((event.get("LogicalResourceId", "?"), event.get("ResourceType", ""), reason))
        return len(fresh)
