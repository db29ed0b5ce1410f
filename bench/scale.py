"""Scale: 20 different opentofu stacks (the offline stack, each in its own folder with its own state, one shared
plugin cache), first created all at once from a cold cache, then their unchanged creates run one after the
other and all at once, alternately: the throughput ratio and that every run succeeded."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from bench.context import Bench, Family
from bench.measure import BenchError, Command, Report, Running, Sample, alternate
from bench.opentofu import runner_apply

STACKS = 20
GOAL = 1.6


@dataclass
class Tally:
    runs: int = 0
    failed: list[Command] = field(default_factory=list)
    first_error: str = ""

    def record(self, stack: Command, error: BenchError | None) -> None:
        self.runs += 1
        if error is not None:
            self.failed.append(stack)
            self.first_error = self.first_error or error.reason

    def add_rows(self, report: Report, figure: str) -> None:
        report.add(figure, f"{self.runs - len(self.failed)}/{self.runs} succeeded", "all succeed", not self.failed)
        if self.failed:
            report.add("  first error", self.first_error[:240])


def bench_scale(bench: Bench) -> None:
    family = Family("random-password")
    stacks = [
        runner_apply(bench, family, f"bench-scale-{i}", {**family.inputs, "name": f"scale-{i}"}, cache="scale-cache")
        for i in range(STACKS)
    ]
    first = Tally()
    _at_once(stacks, first)
    for stack in first.failed:
        stack.run()  # every stack exists before the timed rounds, so that each of them is an unchanged create
    tally = Tally()
    one_by_one, at_once = alternate(lambda: _one_by_one(stacks, tally), lambda: _at_once(stacks, tally))
    ratio = one_by_one.median / at_once.median

    report = bench.report
    first.add_rows(report, f"scale: {STACKS} first creates at once, cold shared plugin cache")
    report.add(
        f"scale: {STACKS} unchanged opentofu creates, one by one / all at once",
        f"{one_by_one.median:.1f} s / {at_once.median:.1f} s: {ratio:.2f}x throughput ({os.cpu_count()} cores)",
        f">= {GOAL:.1f}x on 2 cores",
        ratio >= GOAL,
    )
    tally.add_rows(report, "scale: unchanged creates that succeeded")


def _one_by_one(stacks: list[Command], tally: Tally) -> Sample:
    started = time.perf_counter()
    for stack in stacks:
        _finish(stack, stack.start(), tally)
    return Sample(time.perf_counter() - started, 0)


def _at_once(stacks: list[Command], tally: Tally) -> Sample:
    started = time.perf_counter()
    for stack, running in [(stack, stack.start()) for stack in stacks]:
        _finish(stack, running, tally)
    return Sample(time.perf_counter() - started, 0)


def _finish(stack: Command, running: Running, tally: Tally) -> None:
    """A failed run is counted, not fatal: whether all succeed is one of the figures."""
    try:
        running.finish()
    except BenchError as error:
        tally.record(stack, error)
    else:
        tally.record(stack, None)
