"""The pulumi backend with the real engine: signals, the time limit, the engine version, plan summaries."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tests.helpers import SENTINEL, Container, base_env, run_cli, unique
from tests.helpers.pulumi import PASSPHRASE, SLOW_PY, SMALL_PY, checkpoint, isolate_pulumi, lock_files, managed, program
from tests.helpers.running import start


def test_sigterm_during_a_slow_resource_stops_cleanly_and_a_rerun_converges(
    container: Container, tmp_path: Path
) -> None:
    name = unique("signal")
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    files = program(SLOW_PY, "slow")
    running = start(container, "create", {"seconds": 20}, files=files)
    running.wait_for("slow: in progress (add)")  # the engine asked the provider to create it: the sleep runs
    signalled = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    stopped = running.result(timeout=90)

    assert stopped.returncode == 130, stopped.log
    assert time.monotonic() - signalled < 15, "the engine stopped instead of waiting out the 20 s create"
    assert stopped.error.startswith("The run was interrupted by SIGTERM."), stopped.error
    assert "Traceback" not in stopped.log
    assert not stopped.files["values"].exists() and not stopped.files["secrets"].exists()
    assert lock_files(state, "slow", name) == [], "pulumi released the stack's lock"
    interrupted = checkpoint(state, "slow", name)  # readable: the engine finished writing it
    # The interrupted create is not in the state (the engine records it as failed, with no pending operation
    # left for an operator to clear); if a future engine left one, the rerun below would still have to converge.
    assert managed(interrupted) == []

    rerun = container.run("create", {"seconds": 0}, files=files)
    rerun.assert_ok()
    assert rerun.json("values") == {"seconds": 0}
    converged = checkpoint(state, "slow", name)
    assert managed(converged) == ["pulumi-python:dynamic:Resource.slow"]
    assert not converged.get("pending_operations")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                table[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return table


def kill_engine(stack: str) -> int:
    """SIGKILL the `pulumi up` of `stack` and every process it started (its plugins run in process groups of
    their own), as an OOM kill or the loss of the node would; returns how many processes were killed."""
    table = _process_table()
    doomed = {pid for pid, (_, cmd) in table.items() if cmd.startswith("pulumi up ") and f"--stack {stack} " in cmd}
    assert doomed, "no `pulumi up` of the stack is running"
    while True:
        children = {pid for pid, (ppid, _) in table.items() if ppid in doomed} - doomed
        if not children:
            break
        doomed |= children
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(doomed)


def test_a_killed_engine_leaves_a_lock_and_a_pending_operation_and_the_runner_recovers(
    container: Container, tmp_path: Path
) -> None:
    """pulumi killed mid-create (no chance to clean up): its lock stays, and the state records the create as a
    pending operation. The next run names the lock and `--cancel-lock`; with it, the run redoes the create and
    then clears the pending operation, which pulumi 3.79 would otherwise keep (warning on every run) until an
    interactive `pulumi refresh`."""
    name = unique("killed")
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=name)
    files = program(SLOW_PY, "slow")
    running = start(container, "create", {"seconds": 60}, files=files)
    running.wait_for("slow: in progress (add)")
    assert kill_engine(name) >= 3, "pulumi, its language host and the dynamic provider"
    killed = running.result(timeout=60)
    assert killed.returncode == 1, killed.log
    assert killed.error.startswith("pulumi was killed by signal SIGKILL while updating the stack."), killed.error
    assert "--cancel-lock" in killed.error and "Traceback" not in killed.log
    assert not killed.files["values"].exists() and not killed.files["secrets"].exists()
    assert len(lock_files(state, "slow", name)) == 1
    pending = checkpoint(state, "slow", name).get("pending_operations") or []
    assert [(op["type"], op["resource"]["urn"].rsplit("::", 1)[-1]) for op in pending] == [("creating", "slow")]

    locked = container.run("create", {"seconds": 0}, files=files)
    assert locked.returncode == 1 and "The stack is locked by another update" in locked.error, locked.log

    assert killed.out_dir is not None
    args = ["--stack-name", name, "--state-url", state.as_uri(), "--var", "seconds=0", "--cancel-lock"]
    recovered = run_cli(["apply", str(killed.out_dir), *args], container.env)
    recovered.assert_ok()
    assert "1 pending operation(s) a killed run never finished (slow interrupted while creating)" in recovered.log
    assert "cleared 1 pending operation(s) from the state" in recovered.log
    after = checkpoint(state, "slow", name)
    assert not after.get("pending_operations")
    assert managed(after) == ["pulumi-python:dynamic:Resource.slow"]
    assert lock_files(state, "slow", name) == []


def test_timeout_stops_the_engine_with_exit_3(container: Container, tmp_path: Path) -> None:
    name = unique("timeout")
    state = isolate_pulumi(container, tmp_path, IAC_RUNNER_STACK_NAME=name, IAC_RUNNER_TIMEOUT="8")
    began = time.monotonic()
    result = container.run("create", {"seconds": 60}, files=program(SLOW_PY, "slow"))
    assert result.returncode == 3, result.log
    assert time.monotonic() - began < 30, "stopped at the limit, not after the 60 s create"
    assert "exceeded its time limit of 8 s" in result.error and "IAC_RUNNER_TIMEOUT" in result.error
    assert "Traceback" not in result.log
    assert not result.files["values"].exists() and not result.files["secrets"].exists()
    assert lock_files(state, "slow", name) == [], "the stack's lock was released"


def test_backends_lists_pulumi_with_its_version() -> None:
    result = run_cli(["backends"], base_env())
    result.assert_ok()
    line = next((line for line in result.stdout.splitlines() if line.startswith("pulumi")), "")
    assert "pulumi v3.79.0" in line and "Automation API 3.79.0" in line, result.stdout


def test_plan_summarises_an_update_and_a_replacement(tmp_path: Path) -> None:
    """`iac-runner plan` counts the engine's preview steps: a change in place, and a replacement (one add, one
    remove), the way tofu counts them; a plan changes nothing."""
    stack = tmp_path / "small"
    stack.mkdir()
    for file_name, text in program(SMALL_PY).items():
        (stack / file_name).write_text(text)
    env = base_env({"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "IAC_RUNNER_SECRET_token": SENTINEL})
    env["TMPDIR"] = str(tmp_path)
    common = ["--stack-name", unique("plan"), "--state-url", (tmp_path / "state").as_uri()]
    inputs = ["--var", "name=planned", "--var", "size=2"]

    run_cli(["apply", str(stack), *common, *inputs], env).assert_ok()

    update = run_cli(["plan", str(stack), *common, "--var", "name=planned", "--var", "size=3"], env)
    update.assert_ok()
    assert "Plan: 0 to add, 1 to change, 0 to remove" in update.stdout
    assert "this: will change" in update.log

    replace = run_cli(["plan", str(stack), *common, "--var", "name=renamed", "--var", "size=2"], env)
    replace.assert_ok()
    assert "Plan: 1 to add, 0 to change, 1 to remove" in replace.stdout
    assert "this: will replace" in replace.log

    outputs = run_cli(["outputs", str(stack), *common], env)
    outputs.assert_ok()
    assert json.loads(outputs.stdout)["name"] == "planned" and json.loads(outputs.stdout)["size"] == 2
