"""Scale: 20 different opentofu stacks (the offline stack, each in its own folder with its own state, one shared
plugin cache), first created all at once from a cold cache, then their unchanged creates run one after the
other and all at once, alternately: the throughput ratio and that every run succeeded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.context import Bench, Family
from bench.measure import BenchError, Command, Sample, alternate
from bench.opentofu import runner_apply

STACKS = 20
GOAL = 1.6


@dataclass
class Tally:
    runs: int = 0
    failures: int = 0
    first_error: str = ""

    def record(self, error: BenchError | None) -> None:
        self.runs += 1
        if error is not None:
            self.failures += 1
            self.first_error = self.first_error or str(error).splitlines()[0]


def bench_scale(bench: Bench) -> None:
    family = Family("random-password")
    stacks = [
        runner_apply(bench, family, f"bench-scale-{i}", {**family.inputs, "name": f"scale-{i}"}, cache="scale-cache")
        for i in range(STACKS)
    ]
    first = Tally()
    _at_once(stacks, first)
    tally = Tally()
    one_by_one, at_once = alternate(lambda: _one_by_one(stacks, tally), lambda: _at_once(stacks, tally))
    ratio = one_by_one.median / at_once.median

    report = bench.report
    report.add(
        f"scale: {STACKS} first creates at once, cold shared plugin cache",
        f"{first.runs - first.failures}/{first.runs} succeeded" + (f" ({first.first_error})" if first.failures else ""),
        "all succeed",
        not first.failures,
    )
    report.add(
        f"scale: {STACKS} unchanged opentofu creates, one by one / all at once",
        f"{one_by_one.median:.1f} s / {at_once.median:.1f} s: {ratio:.2f}x throughput ({os.cpu_count()} cores)",
        f">= {GOAL:.1f}x on 2 cores",
        ratio >= GOAL,
    )
    report.add(
        "scale: runs that succeeded",
        f"{tally.runs - tally.failures}/{tally.runs}" + (f" ({tally.first_error})" if tally.failures else ""),
        "all succeed",
        not tally.failures,
    )


def _one_by_one(stacks: list[Command], tally: Tally) -> Sample:
    started = time.perf_counter()
    for stack in stacks:
        _finish(stack.start().finish, tally)
    return Sample(time.perf_counter() - started, 0)


def _at_once(stacks: list[Command], tally: Tally) -> Sample:
    started = time.perf_counter()
    for running in [stack.start() for stack in stacks]:
        _finish(running.finish, tally)
    return Sample(time.perf_counter() - started, 0)


def _finish(finish: Callable[[], Sample], tally: Tally) -> None:
    """A failed run is counted, not fatal: whether all succeed is one of the figures."""
    try:
        finish()
    except BenchError as error:
        tally.record(error)
    else:
        tally.record(None)
