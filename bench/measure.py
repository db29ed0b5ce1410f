"""Timing processes, comparing two of them round by round, and the rows the bench prints.

Two sides of a comparison run alternately (runner, bare, runner, bare, ...) so that a machine that gets busier or
quieter during the bench affects both alike; each side's figure is its median.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "5")))
_ELAPSED = re.compile(r"^\s*\d+\.\ds ")  # the runner's log lines start with the seconds since its start


class BenchError(Exception):
    """A measured command failed: which, and the end of what it printed on stderr."""

    def __init__(self, command: str, stderr: str) -> None:
        super().__init__(f"{command}\n{stderr}")
        self.stderr = stderr

    @property
    def reason(self) -> str:
        """The line that says what went wrong: the runner's `error:` line, else the last one."""
        lines = [_ELAPSED.sub("", line).strip() for line in self.stderr.splitlines() if line.strip()]
        return next((line for line in lines if "error:" in line.lower()), lines[-1] if lines else "no output")


@dataclass(frozen=True)
class Sample:
    seconds: float
    #: Peak resident memory of the process and the children it waited for, KiB.
    peak_kib: int


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path | None = None

    def with_env(self, extra: Mapping[str, str]) -> Command:
        return replace(self, env={**self.env, **extra})

    def start(self) -> Running:
        # stderr to a file, not a pipe: a pipe nobody reads while waiting can fill up and stall the child.
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - Running.finish closes it
        child = subprocess.Popen(self.argv, env=dict(self.env), cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=errors)
        return Running(self, child, errors, time.perf_counter())

    def run(self) -> Sample:
        return self.start().finish()


@dataclass(frozen=True)
class Running:
    command: Command
    child: subprocess.Popen[bytes]
    errors: IO[bytes]
    started: float

    def finish(self) -> Sample:
        """Wait for the process; its wall time since start and peak memory, or BenchError if it failed."""
        _, status, usage = os.wait4(self.child.pid, 0)
        elapsed = time.perf_counter() - self.started
        self.child.returncode = code = os.waitstatus_to_exitcode(status)
        with self.errors:
            if code != 0:
                self.errors.seek(0)
                error = self.errors.read().decode(errors="replace")[-3000:]
                raise BenchError(f"exit {code}: {' '.join(self.command.argv)}", error)
        return Sample(elapsed, usage.ru_maxrss)


@dataclass(frozen=True)
class Series:
    samples: list[Sample]

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def peak_mb(self) -> float:
        return max(s.peak_kib for s in self.samples) / 1024


def alternate(*runs: Callable[[], Sample], rounds: int = ROUNDS) -> list[Series]:
    """Each run `rounds` times, taking turns."""
    samples: list[list[Sample]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, taken in zip(runs, samples, strict=True):
            taken.append(run())
    return [Series(s) for s in samples]


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    goal: str = ""
    #: None: the figure has no goal, or could not be measured.
    met: bool | None = None

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "-" if self.goal else ""
        return "met" if self.met else "NOT MET"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: str, goal: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(figure, value, goal, met))

    def missing(self, figure: str, why: str, goal: str = "") -> None:
        self.rows.append(Row(figure, f"not measured: {why}", goal))

    def side_by_side(self, label: str, runner: Series, bare: Series, goal: Goal) -> None:
        """The medians of both sides, their difference and ratio, against `goal`."""
        r, b = runner.median, bare.median
        self.add(f"{label}: iac-runner / bare", f"{r:.2f} s / {b:.2f} s ({r - b:+.2f} s, {r / b:.2f}x)",
                 goal.text, goal.met(r, b))  # fmt: skip

    def render(self) -> str:
        """One row a line: figure, value, goal, verdict. Only rows with a goal align the columns after the value,
        so that a long informational value does not push every goal off the screen."""
        goals = [r for r in self.rows if r.goal]
        figure_width = max((len(r.figure) for r in self.rows), default=0)
        value_width = max((len(r.value) for r in goals), default=0)
        goal_width = max((len(r.goal) for r in goals), default=0)
        lines = [
            f"  {r.figure:<{figure_width}}  {r.value:<{value_width}}  {r.goal:<{goal_width}}  {r.verdict}".rstrip()
            if r.goal
            else f"  {r.figure:<{figure_width}}  {r.value}"
            for r in self.rows
        ]
        met = sum(1 for r in goals if r.met)
        unmeasured = sum(1 for r in goals if r.met is None)
        lines.append(
            f"goals: {met} of {len(goals)} met, {len(goals) - met - unmeasured} not met, {unmeasured} not measured"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    text: str
    met: Callable[[float, float], bool]


def ratio_at_most(limit: float) -> Goal:
    return Goal(f"<= {limit:.2f}x bare", lambda runner, bare: runner <= limit * bare)


def over_at_most(seconds: float) -> Goal:
    limit = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
    return Goal(f"<= +{limit} over bare", lambda runner, bare: runner - bare <= seconds)
