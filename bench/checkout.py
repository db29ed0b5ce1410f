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
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.context import Bench, Family
from bench.measure import Command, Sample, alternate
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.job.source import GitSource, checkout
from tests.helpers.gitserver import GitServer, serving

FILES = 5_000
COMMITS = 100
CHANGED_PER_COMMIT = 200
BLOCKS = 12  # resource blocks a file starts with, ~2 KB
STACK_PATH = "stacks/payments/opentofu"
TOKEN = "bench-token"  # the loopback server's own, made up for the bench
GOAL = 20.0
_KINDS = ("aws_s3_bucket", "aws_iam_role", "aws_sqs_queue", "aws_lambda_function", "random_id", "terraform_data")
_WORDS = ("orders", "payments", "users", "billing", "search", "events", "name", "tier", "owner", "region", "prefix")


def bench_checkout(bench: Bench) -> None:
    root = bench.folder("git")
    _make_repository(root / "big.git")
    packed = sum(f.stat().st_size for f in (root / "big.git" / "objects").rglob("*") if f.is_file()) / 1e6
    with serving(root, TOKEN) as server:
        url = server.url("big.git")
        log.configure("text", stream=io.StringIO())  # the runner's progress lines are not the bench's output
        written: dict[str, int] = {}  # files in the work tree, by side
        sparse, full = functools.partial(_sparse, bench, url, written), functools.partial(_full, bench, url, written)
        sparse()  # the first call imports GitPython: the runner pays that once per run, counted in its start-up
        runner, clone = alternate(sparse, full)
        requests, received = zip(*(_requests(server, side) for side in (sparse, full)), strict=True)
    ratio = clone.median / runner.median
    bench.report.add(
        f"checkout of one stack folder ({FILES:,} files, {COMMITS + 1} commits, {packed:.0f} MB packed): "
        "iac-runner / full clone",
        f"{runner.median:.3f} s / {clone.median:.2f} s: {ratio:.0f}x faster",
        f">= {GOAL:.0f}x",
        ratio >= GOAL,
    )
    bench.report.add("  HTTP requests to the git server: iac-runner / full clone", f"{requests[0]} / {requests[1]}")
    bench.report.add(
        "  bytes received from the git server: iac-runner / full clone",
        f"{received[0] / 1e3:.0f} kB / {received[1] / 1e6:.1f} MB: {received[1] / received[0]:.0f}x less",
    )
    bench.report.add(
        "  files written to the work tree: iac-runner / full clone", f"{written['sparse']} / {written['full']:,}"
    )


def _requests(server: GitServer, side: Callable[[], Sample]) -> tuple[int, int]:
    """The requests one more run of `side` makes, and the bytes the server sends it."""
    before = len(server.requests)
    side()
    made = server.requests[before:]
    return len(made), sum(r.sent for r in made)


def _files(root: Path) -> int:
    return sum(len(files) for folder, _, files in os.walk(root) if ".git" not in Path(folder).parts)


def _sparse(bench: Bench, url: str, written: dict[str, int]) -> Sample:
    source = GitSource(url, path=STACK_PATH, token=TOKEN)
    started = time.perf_counter()
    with checkout(source, bench.tmp, STACK_PATH, Deadline(600)) as checked_out:
        elapsed = time.perf_counter() - started
        assert (checked_out.folder / "main.tf").is_file(), checked_out.folder
        written["sparse"] = _files(checked_out.root)
    return Sample(elapsed, 0)


def _full(bench: Bench, url: str, written: dict[str, int]) -> Sample:
    dest = bench.tmp / f"full-clone-{time.monotonic_ns()}"
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    auth = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {header}"}  # fmt: skip
    sample = Command(["git", "clone", "--quiet", url, str(dest)], {**os.environ, **auth}).run()
    written["full"] = _files(dest)
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    return sample


def _make_repository(bare: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
    stream = b"".join(_history(random.Random(13)))  # noqa: S311 - filler text, not security
    subprocess.run(["git", "fast-import", "--quiet"], input=stream, cwd=bare, check=True)
    # Packed as a git host keeps its repositories (fast-import's own pack is not fully deltified).
    subprocess.run(["git", "repack", "-a", "-d", "-q"], cwd=bare, check=True)


def _history(rng: random.Random) -> Iterator[bytes]:
    """fast-import's input: a first commit with every file and the stack, then commits that each rewrite the last
    third of some files (new blocks, as real edits add), so that history weighs like a real repository's."""
    paths = [f"modules/team-{i // 100:02d}/module-{i % 100:02d}.tf" for i in range(FILES - 1)]
    stack = (Family("random-password").folder("opentofu") / "main.tf").read_bytes()
    contents = {p: _blocks(rng, BLOCKS) for p in paths}
    yield _commit(0, [*contents.items(), (f"{STACK_PATH}/main.tf", stack)])
    for n in range(1, COMMITS + 1):
        changed = rng.sample(paths, CHANGED_PER_COMMIT)
        for path in changed:
            kept = contents[path]
            contents[path] = kept[: len(kept) * 2 // 3] + _blocks(rng, BLOCKS // 3)
        yield _commit(n, [(p, contents[p]) for p in changed])


def _blocks(rng: random.Random, n: int) -> bytes:
    """Terraform-like text: it compresses and deltas like code does, not like noise."""
    blocks = []
    for _ in range(n):
        kind, name = rng.choice(_KINDS), f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}_{rng.randrange(1000)}"
        attributes = "".join(
            f'  {rng.choice(_WORDS)} = "{rng.choice(_WORDS)}-{rng.getrandbits(24):06x}"\n' for _ in range(4)
        )
        blocks.append(f'resource "{kind}" "{name}" {{\n{attributes}}}\n\n')
    return "".join(blocks).encode()


def _commit(n: int, files: list[tuple[str, bytes]]) -> bytes:
    when = 1_700_000_000 + n * 3600
    out = [
        b"commit refs/heads/main\n",
        f"committer Bench <bench@example.invalid> {when} +0000\n".encode(),
        _data(f"change {n}".encode()),
    ]
    for path, content in files:
        out += [f"M 100644 inline {path}\n".encode(), _data(content)]
    return b"".join(out) + b"\n"


def _data(content: bytes) -> bytes:
    return f"data {len(content)}\n".encode() + content + b"\n"
