"""Per-phase limits (Deadline.phase): a phase ends at its own limit or the run's, whichever comes first, and says
which phase ran out and what it reaches."""

from __future__ import annotations

import pytest

from iac_runner.common.errors import ExitCode, RunTimeout
from iac_runner.common.process import Deadline


def test_a_phase_ends_before_the_run() -> None:
    run = Deadline(600)
    checkout = run.phase("checkout", 0, "IAC_RUNNER_CHECKOUT_TIMEOUT", "the git host")
    assert checkout is not run and checkout.remaining() <= 0 < run.remaining()
    with pytest.raises(RunTimeout) as raised:
        checkout.check("running git fetch")
    error = raised.value
    assert error.exit_code == ExitCode.TIMEOUT
    assert error.summary == "The checkout phase exceeded its time limit of 0 s while running git fetch."
    assert error.where == "IAC_RUNNER_CHECKOUT_TIMEOUT"
    assert error.fix == (
        "Check the network path to the git host, or raise IAC_RUNNER_CHECKOUT_TIMEOUT; nothing was changed by this "
        "phase."
    )
    run.check("applying")  # the rest of the run's time is kept


@pytest.mark.parametrize("seconds", [None, 600, 10_000])
def test_a_phase_limit_beyond_the_runs_is_the_runs(seconds: float | None) -> None:
    run = Deadline(600)
    assert run.phase("init", seconds, "IAC_RUNNER_INIT_TIMEOUT") is run


def test_the_run_running_out_during_a_phase_names_the_runs_setting() -> None:
    run = Deadline(0)
    with pytest.raises(RunTimeout) as raised:
        run.phase("init", 300, "IAC_RUNNER_INIT_TIMEOUT").check("initialising the stack")
    assert raised.value.summary == "The run exceeded its time limit of 0 s while initialising the stack."
    assert "IAC_RUNNER_TIMEOUT" in raised.value.fix
