"""Bounded retries for transient faults only (a network hiccup, a throttled API, a 5xx from a state backend):
exponential backoff with jitter, each retry logged with its reason and wait, the last error the one reported.

What a retry cannot fix (bad input, a failed resource, a held lock) is never retried; neither is a change that
may have started: callers only wrap what is safe to do again.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from iac_runner.common.errors import RunnerError
from iac_runner.common.log import log
from iac_runner.common.process import Deadline

T = TypeVar("T")

#: What engines, git and HTTP clients print for a fault that a later attempt may not meet.
_TRANSIENT = re.compile(
    r"(?P<status>(?:returned error|status ?code|http status|api error)[:= ]+5\d\d"
    r"|\b5\d\d (?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out|Slow Down))"
    r"|(?P<throttle>Throttl\w*|RequestLimitExceeded|TooManyRequests\w*|SlowDown|Rate exceeded)"
    r"|(?P<network>connection reset|connection refused|broken pipe|i/o timeout|timed out|unexpected EOF"
    r"|early EOF|remote end hung up|RPC failed|could not resolve host|temporary failure in name resolution"
    r"|failed to connect|connection closed|no route to host"
    # curl's words, through git: a connection dropped before or while the answer came.
    r"|empty reply from server|recv failure|send failure|couldn't connect to server"
    # Go's (tofu, its providers and state backends, pulumi): the AWS SDK's, and net/http's `Get "url": EOF`.
    r'|request send failed|": EOF\b)',
    re.IGNORECASE,
)


def transient_reason(text: str) -> str | None:
    """Why `text` (an engine's or git's error output) looks like a transient fault, or None."""
    found = _TRANSIENT.search(text)
    if found is None:
        return None
    kind = found.lastgroup or "network"
    return {"status": "a server error", "throttle": "throttling", "network": "a network error"}[kind] + (
        f" ({found.group(0).strip()})"
    )


@dataclass(frozen=True)
class Retry:
    """Up to `retries` more attempts after the first, within the deadline."""

    retries: int
    deadline: Deadline
    base_seconds: float = 1.0
    max_seconds: float = 20.0

    def wait(self, attempt: int) -> float:
        """The pause before retry number `attempt` (1-based): exponential, with full jitter on its upper half."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    def pause(self, attempt: int, doing: str, reason: str) -> bool:
        """Log and sleep before retry `attempt`; False when no retry is left or the deadline would pass."""
        if attempt > self.retries:
            return False
        wait, left = self.wait(attempt), self.deadline.remaining()
        if wait >= left:
            log.warning(f"{doing} failed with {reason}: no retry, the time limit is {max(left, 0):.1f} s away")
            return False
        log.warning(f"{doing} failed with {reason}: retry {attempt} of {self.retries} in {wait:.1f} s")
        time.sleep(wait)
        return True

    def run(self, attempt: Callable[[], T], doing: str) -> T:
        """`attempt()` until it succeeds, or fails with an error that is not transient (`RunnerError.transient`),
        or the retries are used up (the last error is raised)."""
        number = 0
        while True:
            try:
                return attempt()
            except RunnerError as error:
                number += 1
                if not error.transient or not self.pause(number, doing, error.transient):
                    raise
