"""The Container Driver image: its size when a Docker engine answers and `iac-driver-runner:local` exists, and with
BENCH_IMAGE_BUILD=1 the time `image/build.sh` takes to rebuild it after a code change (on a copy of this checkout
with one Python file changed, so that the layer cache is what a developer's next build finds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from bench.context import ROOT, Bench

TAG = "iac-driver-runner:local"
REBUILD_TAG = "iac-driver-runner:bench-rebuild"
SIZE_MB = 600
SIZE_FIGURE = f"image size ({TAG})"
REBUILD_FIGURE = "image rebuild after a code change (image/build.sh)"


def bench_image(bench: Bench) -> None:
    docker = shutil.which("docker")
    why = _unavailable(docker)
    if docker is None or why:
        bench.report.missing(SIZE_FIGURE, why, f"<= {SIZE_MB} MB")
        bench.report.missing(REBUILD_FIGURE, why)
        return
    size = int(_docker(docker, "image", "inspect", "--format", "{{.Size}}", TAG).stdout) / 1e6
    bench.report.add(SIZE_FIGURE, f"{size:.0f} MB", f"<= {SIZE_MB} MB", size <= SIZE_MB)
    if os.environ.get("BENCH_IMAGE_BUILD") != "1":
        bench.report.missing(REBUILD_FIGURE, "set BENCH_IMAGE_BUILD=1 to measure it")
    elif not (ROOT / "image" / "build.sh").is_file():
        bench.report.missing(REBUILD_FIGURE, "this checkout has no image/build.sh (make image)")
    else:
        _rebuild(bench, docker)


def _unavailable(docker: str | None) -> str:
    """Why the image cannot be measured, or '' when it can."""
    if docker is None:
        return "no docker client on PATH"
    try:
        server = _docker(docker, "version", "--format", "{{.Server.Version}}")
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 60 s"
    if server.returncode != 0:
        return f"no Docker engine answers ({(server.stderr.strip().splitlines() or ['?'])[-1]})"
    if _docker(docker, "image", "inspect", TAG).returncode != 0:
        return f"{TAG} does not exist (make image builds it)"
    return ""


def _docker(docker: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker, *args], capture_output=True, text=True, timeout=60, check=False)


def _rebuild(bench: Bench, docker: str) -> None:
    copy = bench.folder("image-context")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    with (copy / "iac_runner" / "__init__.py").open("a") as changed:
        changed.write(f"# changed by the bench at {time.time_ns()}\n")
    started = time.perf_counter()
    build = subprocess.run(
        [str(copy / "image" / "build.sh")],
        env={**os.environ, "IMAGE_TAG": REBUILD_TAG},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if build.returncode != 0:
        last = (build.stderr.strip().splitlines() or ["no output"])[-1]
        bench.report.missing(REBUILD_FIGURE, f"image/build.sh failed: {last}")
        return
    _docker(docker, "image", "rm", REBUILD_TAG)
    bench.report.add(REBUILD_FIGURE, f"{seconds:.0f} s")
