"""Fixtures the unit tests share."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from iac_runner.common.log import log


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The run's log, as JSON lines, for the test to read (`tests.helpers.log_messages`); the log as it was after."""
    previous = (log.format, log.debug_enabled, log._stream)
    stream = io.StringIO()
    log.configure("json", stream=stream)
    try:
        yield stream
    finally:
        log.configure(previous[0], debug=previous[1], stream=previous[2])
