"""`iac-runner --help` against a bare interpreter start in the same venv, and the heavy modules `--help` loads."""

from __future__ import annotations

import subprocess

from bench.context import CLI, PYTHON, Bench
from bench.measure import ROUNDS, Command, alternate, over_at_most

HEAVY = ("boto3", "botocore", "pulumi", "cfnlint", "git", "pydantic", "rich")
# Cheap to run, and a median over more rounds steadies a figure measured in milliseconds.
HELP_ROUNDS = 4 * ROUNDS

_LOADED = """
import sys
from iac_runner.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in sys.argv[1:] if m in sys.modules))
"""


def bench_help(bench: Bench) -> None:
    help_cmd = Command([CLI, "--help"], bench.env)
    bare = Command([PYTHON, "-c", "pass"], bench.env)
    runner, interpreter = alternate(help_cmd.run, bare.run, rounds=HELP_ROUNDS)
    r, b = runner.median * 1000, interpreter.median * 1000
    goal = over_at_most(0.100)
    bench.report.add(
        "iac-runner --help / bare `python -c pass` (same venv, interleaved)",
        f"{r:.0f} ms / {b:.0f} ms ({r - b:+.0f} ms)",
        goal.text,
        goal.met(runner.median, interpreter.median),
    )
    heavy = _heavy_modules(bench)
    bench.report.add("heavy modules imported by --help", ", ".join(heavy) or "none", "none", not heavy)


def _heavy_modules(bench: Bench) -> list[str]:
    out = subprocess.run(
        [PYTHON, "-c", _LOADED, *HEAVY], env=bench.env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]
