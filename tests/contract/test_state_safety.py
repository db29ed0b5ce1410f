"""State safety and concurrency through the container contract: a state backend lost mid-apply, the runner killed
outright, two runs on one stack, parallel CLI runs on one folder, state file modes, read-only filesystems, and
stacks that use code from outside their folder in a sparse checkout."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SENTINEL, Container, base_env, isolate, make_repo, s3_client, unique
from tests.helpers.faultproxy import serving
from tests.helpers.pulumi import SMALL_PY, isolate_pulumi, program
from tests.helpers.running import start
from tests.helpers.tofu import SLOW_TF, SMALL_TF, state_resources

SMALL_INPUTS = {"name": "kept", "size": 2}

# -- the state backend -----------------------------------------------------------------------------------------


def test_a_state_backend_lost_mid_apply_is_reported_as_such_with_a_private_emergency_copy(
    container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    """The S3 endpoint dies while tofu applies: tofu cannot save its state and writes errored.tfstate. The run
    says so (not "locked"), keeps that copy beside the output files (0600; the Job's work dir is thrown away)
    and says how to push it back."""
    s3_client(aws).create_bucket(Bucket="tofu-state")
    with serving(aws["AWS_ENDPOINT_URL"]) as proxy:
        isolate(container, tmp_path, **{**aws, "AWS_ENDPOINT_URL": proxy.url}, IAC_RUNNER_RETRIES="0",
                IAC_RUNNER_STACK_NAME=unique("lost"), IAC_RUNNER_STATE_URL="s3://tofu-state/lost")  # fmt: skip
        running = start(container, "create", {"seconds": 3}, files={"main.tf": SLOW_TF})
        running.wait_for("terraform_data.slow: started")
        proxy.down = True
        result = running.result(timeout=300)
    assert result.returncode == 1, result.log
    error = result.error
    summary = error.splitlines()[0]
    assert summary.startswith("OpenTofu changed the infrastructure but could not save the state"), error
    assert "locked by another run" not in error, "a lost backend is not a held lock"
    assert "state push" in error and "s3://tofu-state/lost/" in error, "how and where to push the copy back"
    assert result.out_dir is not None
    kept = list(result.out_dir.rglob("errored.tfstate"))
    assert len(kept) == 1, sorted(p.name for p in result.out_dir.iterdir())
    assert str(kept[0]) in error
    assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert [r["type"] for r in json.loads(kept[0].read_text())["resources"]] == ["terraform_data"]
    assert not result.files["values"].exists() and not result.files["secrets"].exists()


# -- the runner killed outright --------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_of_the_runner_stops_tofu_and_the_next_run_cleans_up(container: Container, tmp_path: Path) -> None:
    """SIGKILL of the runner alone (no pod teardown): tofu is told to stop (SIGINT, as on Ctrl-C), saves its
    state and releases the lock instead of running on orphaned; the next run removes the dead run's work dir
    (its saved plan may hold secrets) and converges."""
    name = unique("killed")
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    files = {"main.tf": SLOW_TF}
    running = start(container, "create", {"seconds": 60}, files=files)
    running.wait_for("terraform_data.slow: started")
    engines = _descendants(running.proc.pid)
    assert engines, "tofu runs under the runner"
    work_dirs = list((tmp_path / "tmp").glob("iac-runner-work-*"))
    assert work_dirs, "the run has a work dir under TMPDIR"
    running.proc.kill()
    running.proc.wait(10)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in engines if _alive(pid)}
    assert not left, f"outlived the runner: {left}"
    assert not (state / name / ".terraform.tfstate.lock.info").exists(), "tofu released the state lock"
    json.loads((state / name / "terraform.tfstate").read_text())

    rerun = container.run("create", {"seconds": 0}, files=files)
    rerun.assert_ok()
    assert not any(folder.exists() for folder in work_dirs), "the dead run's work dir was removed"
    assert state_resources(state / name / "terraform.tfstate") == ["terraform_data.slow"]


# -- runs at the same time -------------------------------------------------------------------------------------


def test_two_creates_of_one_stack_at_once_wait_for_each_other(container: Container, tmp_path: Path) -> None:
    """The second run waits for the first's state lock (IAC_RUNNER_LOCK_TIMEOUT), then applies on the state the
    first saved: both succeed, one resource, a valid state."""
    name = unique("same")
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_LOCK_TIMEOUT="120")
    files = {"main.tf": SLOW_TF}
    first = start(container, "create", {"seconds": 4}, files=files)
    first.wait_for("terraform_data.slow: started")
    second = start(container, "create", {"seconds": 4}, files=files)
    results = [first.result(timeout=240), second.result(timeout=240)]
    for result in results:
        assert result.returncode == 0, result.log
        assert result.json("values") == {"seconds": 4}
    assert state_resources(state / name / "terraform.tfstate") == ["terraform_data.slow"]
    assert not (state / name / ".terraform.tfstate.lock.info").exists()


def _folder_listing(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_mtime) for p in folder.rglob("*")}


@pytest.mark.parametrize("backend", ["opentofu", "pulumi"])
def test_parallel_cli_runs_on_one_stack_folder_never_write_into_it(backend: str, tmp_path: Path) -> None:
    """Four `iac-runner apply` on one folder at once (different stacks): all succeed and the folder is exactly as
    it was: no override files, no .terraform, no lock file, no virtualenv, no bytecode."""
    folder = tmp_path / "stack"
    folder.mkdir()
    files = {"main.tf": SMALL_TF} if backend == "opentofu" else program(SMALL_PY)
    for file, text in files.items():
        (folder / file).write_text(text)
    before = _folder_listing(folder)
    env = base_env({"TMPDIR": str(tmp_path), "PULUMI_CONFIG_PASSPHRASE": "parallel-passphrase-0123",
                    "IAC_RUNNER_SECRET_token": SENTINEL})  # fmt: skip
    procs = []
    for index in range(4):
        argv = [sys.executable, "-m", "iac_runner", "apply", str(folder), "--stack-name", unique(f"p{index}"),
                "--state-url", (tmp_path / "state").as_uri(), "--var", f"name=n{index}", "--var", "size=3"]  # fmt: skip
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        assert SENTINEL not in stdout + stderr
    assert _folder_listing(folder) == before


# -- file modes ------------------------------------------------------------------------------------------------


def _modes(root: Path) -> Iterator[tuple[Path, int]]:
    yield root, stat.S_IMODE(root.stat().st_mode)
    for path in root.rglob("*"):
        if not path.is_symlink():
            yield path, stat.S_IMODE(path.stat().st_mode)


def _assert_private(root: Path) -> None:
    loose = [f"{p} {oct(m)}" for p, m in _modes(root) if m & 0o077]
    assert not loose, "state readable by others:\n" + "\n".join(loose)


def test_tofu_file_state_is_private(container: Container, tmp_path: Path) -> None:
    """State folders 0700, terraform.tfstate and its backup 0600, from the first create on (the runner's umask
    for engines), also in a state folder that existed with loose modes."""
    name = unique("modes")
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    state.mkdir(mode=0o700)
    (state / name).mkdir()
    (state / name).chmod(0o755)
    for size in (1, 2):  # the second apply writes terraform.tfstate.backup
        container.run("create", {**SMALL_INPUTS, "size": size}, secrets={"token": SENTINEL},
                      files={"main.tf": SMALL_TF}).assert_ok()  # fmt: skip
    assert (state / name / "terraform.tfstate.backup").exists()
    _assert_private(state)


def test_pulumi_file_state_is_private(container: Container, tmp_path: Path) -> None:
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("modes"))
    container.run("create", SMALL_INPUTS, secrets={"token": SENTINEL}, files=program(SMALL_PY)).assert_ok()
    assert list(state.rglob("*.json")), "pulumi wrote its checkpoint"
    _assert_private(state)


# -- read-only filesystems -------------------------------------------------------------------------------------


def read_only(*folders: Path, writable: tuple[Path, ...] = ()) -> list[str]:
    """A prefix that runs a command with `folders` mounted read-only (a private mount namespace), as a pod with a
    read-only root filesystem sees them (the permission bits do not stop root, a read-only mount does); the
    `writable` folders inside them stay writable, as a pod's volumes do."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        reason = f"read-only mounts need `unshare -m` (root or user namespaces): {probe.stderr.strip()}"
        print(reason)
        pytest.skip(reason)
    quoted = [shlex.quote(str(f)) for f in folders]
    volumes = "".join(
        f"mount --bind {q} {q} && mount -o remount,bind,rw {q} && " for q in map(shlex.quote, map(str, writable))
    )
    mounts = "".join(f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && " for q in quoted)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", mounts + volumes + 'exec "$@"', "sh"]


def _read_only_run(tmp_path: Path, backend: str, read_only_too: list[Path]) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    folders = {"home": home, "cache": tmp_path / "plugin-cache", "pulumi": tmp_path / "pulumi-home",
               "stack": tmp_path / "stack", "tmp": tmp_path / "tmp"}  # fmt: skip
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    files = {"main.tf": SMALL_TF} if backend == "opentofu" else program(SMALL_PY)
    for file, text in files.items():
        (folders["stack"] / file).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    env = base_env({"HOME": str(home), "XDG_CACHE_HOME": "", "XDG_STATE_HOME": "",
                    "TF_PLUGIN_CACHE_DIR": str(folders["cache"]), "PULUMI_HOME": str(folders["pulumi"]),
                    "TMPDIR": str(folders["tmp"]), "PULUMI_CONFIG_PASSPHRASE": "read-only-passphrase-0123",
                    "IAC_RUNNER_SECRET_token": SENTINEL})  # fmt: skip
    env = {k: v for k, v in env.items() if v}
    prefix = read_only(
        *(folders[name] for name in ["home", "cache", "pulumi", "stack"]), *read_only_too, writable=(out,)
    )
    argv = [sys.executable, "-m", "iac_runner", "apply", str(folders["stack"]), "--stack-name", unique("ro"),
            "--state-url", (tmp_path / "state").as_uri(), "--out-dir", str(out),
            "--var", "name=ro", "--var", "size=3"]  # fmt: skip
    return subprocess.run(
        prefix + argv, env=env, cwd=folders["stack"], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize("backend", ["opentofu", "pulumi"])
def test_read_only_home_caches_and_stack_folder_fall_back_to_the_temp_dir(backend: str, tmp_path: Path) -> None:
    result = _read_only_run(tmp_path, backend, [])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Internal error" not in result.stderr
    assert "is not writable" in result.stderr, "says where its caches went instead"
    assert json.loads((tmp_path / "out" / "outputs.json").read_text())["name"] == "ro"


def test_nothing_writable_is_a_clear_error(tmp_path: Path) -> None:
    """TMPDIR, /tmp, /var/tmp and the working folder read-only too: no place for the run's work dir."""
    result = _read_only_run(tmp_path, "opentofu", [tmp_path / "tmp", Path("/var/tmp"), Path("/tmp")])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Internal error" not in result.stderr
    assert "writable" in result.stderr and "TMPDIR" in result.stderr, result.stderr


# -- code from outside the stack's folder ----------------------------------------------------------------------

MODULE_USER_TF = """\
variable "name" {
  type = string
}

module "label" {
  source = "../../modules/label"
  name   = var.name
}

output "label" {
  value = module.label.id
}
"""

LABEL_MODULE_TF = """\
variable "name" {
  type = string
}

resource "terraform_data" "this" {
  input = var.name
}

output "id" {
  value = "label-${terraform_data.this.output}"
}
"""

SHARED_USER_PY = """\
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "shared"))

import pulumi
from naming import label

pulumi.export("label", label(pulumi.Config().require("name")))
"""


@pytest.mark.parametrize(
    ("stack_files", "outside"),
    [
        ({"main.tf": MODULE_USER_TF}, {"modules/label/main.tf": LABEL_MODULE_TF}),
        (
            {"Pulumi.yaml": "name: shared-user\nruntime: python\n", "__main__.py": SHARED_USER_PY},
            {"stacks/shared/naming.py": 'def label(name):\n    return f"label-{name}"\n'},
        ),
    ],
    ids=["opentofu ../../modules", "pulumi ../shared"],
)
def test_a_sparse_checkout_fetches_the_local_code_the_stack_uses(
    stack_files: dict[str, str], outside: dict[str, str], container: Container, tmp_path: Path
) -> None:
    files = {f"stacks/app/{name}": text for name, text in stack_files.items()}
    files.update(outside)
    files["unrelated/README.md"] = "not needed by the stack\n"
    repo = make_repo(tmp_path / "repo.git", files, copy_stacks=False)
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("sparse"),
                   IAC_RUNNER_SOURCE_URL=repo.as_uri(), IAC_RUNNER_SOURCE_PATH="stacks/app")  # fmt: skip
    result = container.run("create", {"name": "x"})
    result.assert_ok()
    assert result.json("values") == {"label": "label-x"}
    needed = os.path.dirname(next(iter(outside)))
    assert "checked out: stacks/app\n" in result.log
    assert f"the stack uses code beside it: checking out {needed} too" in result.log, result.log


def test_the_checkout_can_be_widened_by_hand(container: Container, tmp_path: Path) -> None:
    """What no heuristic can see (a module path built at run time) is named in IAC_RUNNER_SOURCE_INCLUDE."""
    program_text = SHARED_USER_PY.replace(
        'os.path.join(os.path.dirname(__file__), "..", "shared")',
        'os.path.join(os.path.dirname(__file__), os.pardir, "sha" + "red")',
    )
    files = {"stacks/app/Pulumi.yaml": "name: shared-user\nruntime: python\n", "stacks/app/__main__.py": program_text,
             "stacks/shared/naming.py": 'def label(name):\n    return f"label-{name}"\n'}  # fmt: skip
    repo = make_repo(tmp_path / "repo.git", files, copy_stacks=False)
    isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=unique("sparse"),
                   IAC_RUNNER_SOURCE_URL=repo.as_uri(), IAC_RUNNER_SOURCE_PATH="stacks/app")  # fmt: skip
    missing = container.run("create", {"name": "x"})
    assert missing.returncode != 0
    assert "naming" in missing.error and "IAC_RUNNER_SOURCE_INCLUDE" in missing.error, missing.error
    widened = container.run("create", {"name": "x"}, env={"IAC_RUNNER_SOURCE_INCLUDE": "stacks/shared"})
    widened.assert_ok()
    assert "checked out: stacks/app, stacks/shared\n" in widened.log
