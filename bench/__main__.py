"""`make bench`: the runner against the bare engine, side by side in one run, each figure with its goal (issue 13).

Sections, in order (BENCH_ONLY=name,name runs some of them; BENCH_ROUNDS=n sets the rounds, default 5):
- startup: `iac-runner --help` against a bare `python -c pass` in the same venv, and the heavy modules it loads.
- cloudformation: unchanged create against a bare boto3 change-set script on moto: wall time, AWS API calls,
  change sets the runner creates, peak memory.
- opentofu: unchanged create against the bare `init && apply && output` (offline stack; real-provider stack),
  tofu processes, `tofu init` with a cold and a warm plugin cache.
- pulumi: unchanged `up` against a bare Automation API script, pulumi CLI processes.
- scale: 20 opentofu stacks at once against one after the other.
- checkout: the runner's sparse shallow checkout of one folder of a large repository against a full clone.
- image: the image's size, and with BENCH_IMAGE_BUILD=1 a rebuild after a code change.

Wall times are medians of alternating rounds; counts (API calls, engine processes) come from one more run of
each side through the counters (bench/counting.py), so counting costs no time in the timed rounds. The figures
mean something only on an otherwise idle machine: the load average at start and end is printed with them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.checkout import bench_checkout
from bench.cloudformation import bench_cloudformation
from bench.context import PYTHON, ROOT, Bench, base_env, engine
from bench.counting import EngineCounter, api_counter
from bench.image import bench_image
from bench.measure import ROUNDS, BenchError, Report
from bench.opentofu import bench_opentofu
from bench.pulumi_up import bench_pulumi
from bench.scale import bench_scale
from bench.startup import bench_help
from iac_runner.local.cloud import running


@dataclass(frozen=True)
class Section:
    name: str
    run: Callable[[Bench], None]
    needs: tuple[str, ...] = ()


SECTIONS = (
    Section("startup", bench_help),
    Section("cloudformation", bench_cloudformation),
    Section("opentofu", bench_opentofu, ("tofu",)),
    Section("pulumi", bench_pulumi, ("pulumi",)),
    Section("scale", bench_scale, ("tofu",)),
    Section("checkout", bench_checkout),
    Section("image", bench_image),
)


def chosen() -> list[Section]:
    only = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
    unknown = only - {s.name for s in SECTIONS}
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown section(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(s.name for s in SECTIONS)}")  # fmt: skip
    return [s for s in SECTIONS if not only or s.name in only]


def compile_bytecode() -> None:
    """The runner runs from bytecode, as a pip install and the image have it: where PYTHONDONTWRITEBYTECODE is set,
    an editable checkout would otherwise compile its modules from source on every run (~40 of them)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "iac_runner")], check=True)


def main() -> int:
    sections = chosen()
    compile_bytecode()
    load = os.getloadavg()[0]
    engines = {name: found for name in ("tofu", "pulumi") if (found := engine(name))}
    report = Report()
    with tempfile.TemporaryDirectory(prefix="iac-runner-bench-") as name, running() as cloud:
        tmp = Path(name)
        env = base_env(tmp, cloud)
        with api_counter(cloud.endpoint) as api:
            bench = Bench(tmp, env, cloud, api, EngineCounter(tmp / "engine-counter", engines, env["PATH"]), report)
            for section in sections:
                missing = [e for e in section.needs if e not in engines]
                if missing:
                    report.missing(section.name, f"{', '.join(missing)} not found: run `make tools`")
                    continue
                try:
                    section.run(bench)
                except BenchError as exc:
                    print(report.render(), file=sys.stderr)
                    print(f"bench section {section.name} failed: {exc}", file=sys.stderr)
                    return 1
    print(
        f"iac-runner bench: {ROUNDS} rounds, medians; moto on loopback; {os.cpu_count()} cores, "
        f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end (figures hold on an idle machine only)"
    )
    print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
