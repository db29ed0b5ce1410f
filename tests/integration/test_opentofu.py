"""The opentofu backend with the real engine: signals, parallel runs, the time limit, the engine binaries."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import SENTINEL, Container, Result, base_env, isolate, run_cli, unique
from tests.helpers.running import start
from tests.helpers.tofu import RANDOM_PASSWORD, SLOW_TF, stack_files, state_resources

RANDOM_INPUTS = {"name": "orders-db", "length": 20, "labels": {"team": "payments"}}


def test_sigterm_during_apply_stops_cleanly_and_a_rerun_converges(container: Container, tmp_path: Path) -> None:
    name = unique("signal")
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    files = {"main.tf": SLOW_TF}
    running = start(container, "create", {"seconds": 20}, files=files)
    running.wait_for("terraform_data.slow: started")  # the provisioner's own output: the sleep is running
    signalled = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    stopped = running.result(timeout=60)

    assert stopped.returncode == 130, stopped.log
    assert time.monotonic() - signalled < 15, "tofu stopped the provisioner instead of waiting out its sleep"
    assert "interrupted by SIGTERM" in stopped.error
    assert "Traceback" not in stopped.log
    assert not stopped.files["values"].exists() and not stopped.files["secrets"].exists()
    state_file = state / name / "terraform.tfstate"
    written = json.loads(state_file.read_text())  # intact: tofu finished writing it, with the interrupted resource
    assert [i["status"] for r in written["resources"] for i in r["instances"]] == ["tainted"]
    assert not (state / name / ".terraform.tfstate.lock.info").exists(), "the state lock was released"

    rerun = container.run("create", {"seconds": 0}, files=files)
    rerun.assert_ok()
    assert rerun.json("values") == {"seconds": 0}
    assert state_resources(state_file) == ["terraform_data.slow"]


def test_twenty_stacks_at_once_share_a_fresh_plugin_cache(tmp_path: Path) -> None:
    """20 first creates at once, one cold plugin cache, no dependency lock file in the stacks (tofu's cache is not
    safe for concurrent installs): all succeed, each with its own outputs."""
    cache = tmp_path / "plugin-cache"
    cache.mkdir()
    files = {k: v for k, v in stack_files(RANDOM_PASSWORD).items() if k != ".terraform.lock.hcl"}

    def one(index: int) -> Result:
        root = tmp_path / f"c{index}"
        root.mkdir()
        container = Container(root, base_env({"TF_PLUGIN_CACHE_DIR": str(cache)}))
        isolate(container, root, IAC_RUNNER_STACK_NAME=unique(f"parallel{index}"))
        return container.run("create", RANDOM_INPUTS, secrets={"salt": SENTINEL}, files=files)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for result in results:
        result.assert_ok()
        assert result.json("values")["name"] == "orders-db"
    passwords = {r.json("secrets")["password"] for r in results}
    assert len(passwords) == 20, "twenty stacks, twenty passwords"
    assert list(cache.glob("registry.opentofu.org/hashicorp/random/*/*")), "the provider landed in the shared cache"


def test_timeout_stops_the_engine_with_exit_3(container: Container, tmp_path: Path) -> None:
    name = unique("timeout")
    state = isolate(container, tmp_path, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_TIMEOUT="3")
    result = container.run("create", {"seconds": 30}, files={"main.tf": SLOW_TF})
    assert result.returncode == 3, result.log
    assert "exceeded its time limit of 3 s" in result.error and "IAC_RUNNER_TIMEOUT" in result.error
    assert not result.files["values"].exists() and not result.files["secrets"].exists()
    state_file = state / name / "terraform.tfstate"
    if state_file.exists():  # on a loaded machine the limit may strike before apply wrote anything
        json.loads(state_file.read_text())
    assert not (state / name / ".terraform.tfstate.lock.info").exists(), "the state lock was released"


def test_backends_lists_opentofu_with_its_version() -> None:
    result = run_cli(["backends"], base_env())
    result.assert_ok()
    line = next((line for line in result.stdout.splitlines() if line.startswith("opentofu")), "")
    assert "tofu 1.12.6" in line, result.stdout


def test_terraform_as_the_engine_binary(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        reason = "no `terraform` on PATH: the --engine-binary terraform test needs Terraform installed"
        print(reason)
        pytest.skip(reason)
    stack = tmp_path / "random-password"
    shutil.copytree(RANDOM_PASSWORD, stack)
    lock = (stack / ".terraform.lock.hcl").read_text()
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(RANDOM_INPUTS))
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    name = unique("terraform")
    env = base_env({"IAC_RUNNER_SECRET_salt": SENTINEL})
    common = ["--engine-binary", "terraform", "--stack-name", name, "--state-url", state.as_uri()]

    applied = run_cli(["apply", str(stack), "--inputs", str(inputs), "--out-dir", str(out), *common], env)
    applied.assert_ok()
    assert json.loads((out / "outputs.json").read_text()) == RANDOM_INPUTS
    assert set(json.loads((out / "secret-outputs.json").read_text())) == {"password"}
    version = json.loads(subprocess.run([terraform, "version", "-json"], capture_output=True, check=True).stdout)
    written = json.loads((state / name / "terraform.tfstate").read_text())
    assert written["terraform_version"] == version["terraform_version"], "terraform wrote the state, not tofu"
    # terraform records its registry's entries in its own view of the stack: the user's lock file is not written.
    assert (stack / ".terraform.lock.hcl").read_text() == lock

    destroyed = run_cli(["destroy", str(stack), "--inputs", str(inputs), "--out-dir", str(out), *common], env)
    destroyed.assert_ok()
    assert state_resources(state / name / "terraform.tfstate") == []
