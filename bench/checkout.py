"""Checkout: the runner's sparse shallow checkout of one stack folder from a large repository against a full
clone of it, both over smart HTTP on loopback (`git http-backend` behind the test suite's git server, token auth,
partial clone allowed as GitHub allows it).

The repository is made here with `git fast-import`: FILES files across folders, COMMITS commits each changing
some of them, and the offline opentofu stack in one folder. The runner's side is its own checkout function
(`iac_runner.job.source.checkout`) called in the bench's process, timed until the stack folder is there; the full
clone is `git clone`, timed until it exits.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.context import Bench, Family
from bench.measure import Command, Sample, alternate
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.job.source import GitSource, checkout
from tests.helpers.gitserver import serving

FILES = 5_000
COMMITS = 30
CHANGED_PER_COMMIT = 200
STACK_PATH = "stacks/payments/opentofu"
TOKEN = "bench-token"  # the loopback server's own, made up for the bench
GOAL = 20.0


def bench_checkout(bench: Bench) -> None:
    root = bench.folder("git")
    _make_repository(root / "big.git")
    with serving(root, TOKEN) as server:
        url = server.url("big.git")
        log.configure("text", stream=io.StringIO())  # the runner's progress lines are not the bench's output
        sparse = functools.partial(_sparse, bench, url)
        sparse()  # the first call imports GitPython: the runner pays that once per run, counted in its start-up
        runner, full = alternate(sparse, functools.partial(_full, bench, url))
    ratio = full.median / runner.median
    bench.report.add(
        f"checkout of one stack folder, {FILES:,}-file repo with {COMMITS + 1} commits: iac-runner / full clone",
        f"{runner.median:.3f} s / {full.median:.2f} s: {ratio:.0f}x faster",
        f">= {GOAL:.0f}x",
        ratio >= GOAL,
    )


def _sparse(bench: Bench, url: str) -> Sample:
    source = GitSource(url, path=STACK_PATH, token=TOKEN)
    started = time.perf_counter()
    with checkout(source, bench.tmp, STACK_PATH, Deadline(600)) as checked_out:
        elapsed = time.perf_counter() - started
        assert (checked_out.folder / "main.tf").is_file(), checked_out.folder
    return Sample(elapsed, 0)


def _full(bench: Bench, url: str) -> Sample:
    dest = bench.tmp / f"full-clone-{time.monotonic_ns()}"
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    auth = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {header}"}  # fmt: skip
    sample = Command(["git", "clone", "--quiet", url, str(dest)], {**os.environ, **auth}).run()
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    return sample


def _make_repository(bare: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
    stream = b"".join(_history(random.Random(13)))  # noqa: S311 - filler text, not security
    subprocess.run(["git", "fast-import", "--quiet"], input=stream, cwd=bare, check=True)


def _history(rng: random.Random) -> Iterator[bytes]:
    """fast-import's input: a first commit with every file and the stack, then commits changing some files."""
    paths = [f"services/svc-{i // 100:03d}/module-{i % 100:03d}.tf" for i in range(FILES - 1)]
    stack = (Family("random-password").folder("opentofu") / "main.tf").read_bytes()
    for n in range(COMMITS + 1):
        changed = paths if n == 0 else rng.sample(paths, CHANGED_PER_COMMIT)
        files = [(p, _filler(rng, p, n)) for p in changed] + ([(f"{STACK_PATH}/main.tf", stack)] if n == 0 else [])
        yield _commit(n, f"change {n}", files)


def _filler(rng: random.Random, path: str, n: int) -> bytes:
    words = " ".join(f"{rng.getrandbits(32):08x}" for _ in range(120))
    return f'# {path}, revision {n}\nlocals {{\n  note = "{words}"\n}}\n'.encode()


def _commit(n: int, message: str, files: list[tuple[str, bytes]]) -> bytes:
    when = 1_700_000_000 + n * 3600
    out = [
        b"commit refs/heads/main\n",
        f"committer Bench <bench@example.invalid> {when} +0000\n".encode(),
        _data(message.encode()),
    ]
    for path, content in files:
        out += [f"M 100644 inline {path}\n".encode(), _data(content)]
    return b"".join(out) + b"\n"


def _data(content: bytes) -> bytes:
    return f"data {len(content)}\n".encode() + content + b"\n"
