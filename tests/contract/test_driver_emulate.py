"""`iac-runner driver emulate`: each template's definition, rendered for the s3-bucket stack of a file:// git
repository, run as the Container Driver would run it, against moto: create, create (no-op), destroy, destroy.
The outputs are the contract tests' (tests/contract/test_*_contract.py): same names, values and secret split.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest

from iac_runner.humanitec.render import TEMPLATES
from tests.helpers import SENTINEL, Result, base_env, run_cli, s3_example

# What the contract tests expect of the s3-bucket stack, whichever backend runs it.
VALUES = {"bucket": "contract-bucket", "arn": "arn:aws:s3:::contract-bucket", "region": "us-east-1"}
SECRETS = {"tokenParameter": "/iac-runner/contract-bucket/api-token"}
NO_CHANGES = {
    "cloudformation": "up to date: no changes",
    "opentofu": "no changes: the infrastructure matches the configuration",
    "pulumi": "no changes: the infrastructure matches the program",
}
PASSPHRASE = "emulate-passphrase-not-secret"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No AWS credentials, private temp and state folders, the secret input (and passphrase) from the environment."""
    (tmp_path / "tmp").mkdir()
    return base_env(
        {
            "TMPDIR": str(tmp_path / "tmp"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "IAC_RUNNER_SECRET_apiToken": SENTINEL,
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        }
    )


def render(tmp_path: Path, backend: str, repo: Path, env: dict[str, str], **extra: str) -> Path:
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(s3_example.INPUTS))
    args = [
        "definition", "render", "--backend", backend, "--source-url", repo.as_uri(), "--ref", "main",
        "--path", f"stacks/s3-bucket/{backend}", "--resource-type", "s3",
        "--id", f"s3-{backend}-{uuid.uuid4().hex[:8]}", "--image", "ghcr.io/acme/iac-driver-runner:test",
        "--inputs", str(inputs), "--secret-input", "apiToken",
    ]  # fmt: skip
    for flag, value in extra.items():
        args += [f"--{flag.replace('_', '-')}", value]
    rendered = run_cli(args, env)
    rendered.assert_ok()
    path = tmp_path / f"{backend}.yaml"
    path.write_text(rendered.stdout)
    return path


def emulate(definition: Path, action: str, env: dict[str, str], *args: str) -> tuple[Result, dict[str, object]]:
    result = run_cli(["driver", "emulate", str(definition), "--action", action, *args], env)
    summary = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result, summary


@pytest.mark.parametrize("backend", ["cloudformation", "opentofu", "pulumi"])
def test_template_definition_runs_like_the_driver(
    backend: str, tmp_path: Path, env: dict[str, str], stacks_repo: Path, aws: dict[str, str]
) -> None:
    definition = render(tmp_path, backend, stacks_repo, env)
    out = tmp_path / "out"
    out.mkdir()
    endpoint = aws["AWS_ENDPOINT_URL"]  # the suite's moto, reset for this test: it outlives each emulated run
    cloud = ["--endpoint", endpoint, "--out-dir", str(out)]

    created, summary = emulate(definition, "create", env, *cloud)
    created.assert_ok()
    assert summary["exit_code"] == 0 and summary["error"] is None
    assert summary["outputs"] == VALUES
    assert summary["secret_outputs"] == dict.fromkeys(SECRETS, "***"), "secret outputs are shown masked"
    assert json.loads((out / "outputs.json").read_text()) == VALUES
    assert json.loads((out / "secret-outputs.json").read_text()) == SECRETS
    assert stat.S_IMODE((out / "secret-outputs.json").stat().st_mode) == 0o600
    assert "driver: checking out" in created.log and "resolved to commit" in created.log
    assert "RESOURCE_INPUTS_FILE" in created.log and "IAC_RUNNER_SECRET_apiToken" in created.log
    if backend != "cloudformation":
        key = endpoint.removeprefix("http://").replace(":", "-")
        state = Path(env["XDG_STATE_HOME"]) / "iac-driver-runner" / "emulate" / key
        assert f"state: {state}" in created.log
        assert any(state.iterdir()), "the state is kept in the per-user folder"

    unchanged, summary = emulate(definition, "create", env, *cloud)
    unchanged.assert_ok()
    assert NO_CHANGES[backend] in unchanged.log
    assert summary["outputs"] == VALUES
    assert json.loads((out / "secret-outputs.json").read_text()) == SECRETS

    destroyed, summary = emulate(definition, "destroy", env, *cloud)
    destroyed.assert_ok()
    assert summary["outputs"] == {} and summary["secret_outputs"] == {}
    assert json.loads((out / "outputs.json").read_text()) == {}

    again, summary = emulate(definition, "destroy", env, *cloud)
    again.assert_ok()
    assert "nothing to destroy" in again.log
    assert summary == {"exit_code": 0, "outputs": {}, "secret_outputs": {}, "error": None}


def test_default_cloud_is_moto_and_a_failing_job_shows_its_error_file(
    tmp_path: Path, env: dict[str, str], stacks_repo: Path
) -> None:
    """No AWS credentials: moto is started for the run. The job's failure comes back as its exit code and error."""
    definition = render(tmp_path, "cloudformation", stacks_repo, env)
    bad = tmp_path / "bad-inputs.json"
    bad.write_text(json.dumps({**s3_example.INPUTS, "colour": "blue"}))
    result, summary = emulate(definition, "create", env, "--inputs", str(bad))
    assert result.returncode == 2, result.log
    assert "cloud: moto on http://127.0.0.1:" in result.log
    assert summary["exit_code"] == 2 and summary["outputs"] == {}
    error = str(summary["error"])
    assert "colour" in error and "Traceback" not in error


def test_a_missing_secret_stops_before_anything_runs(tmp_path: Path, env: dict[str, str], stacks_repo: Path) -> None:
    definition = render(tmp_path, "pulumi", stacks_repo, env)
    del env["PULUMI_CONFIG_PASSPHRASE"]
    result, _ = emulate(definition, "create", env, "--endpoint", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "1 secret(s) of the definition have no value here: PULUMI_CONFIG_PASSPHRASE" in result.log
    assert f"{definition}:" in result.log, "the error names the definition's line"
    assert "==> job:" not in result.log, "nothing ran"

    typo, _ = emulate(definition, "create", env, "--secret", "PULUMI_CONFIG_PASSPHRASE=x", "--secret", "apiTokn=y")
    assert typo.returncode == 2 and "--secret apiTokn matches no secret reference" in typo.log


def test_docker_without_an_engine_is_a_clear_error(tmp_path: Path, env: dict[str, str], stacks_repo: Path) -> None:
    definition = render(tmp_path, "cloudformation", stacks_repo, env)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    result, _ = emulate(definition, "create", env, "--docker", "--endpoint", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "--docker needs" in result.log and "run without --docker" in result.log


def test_unresolvable_placeholder_and_broken_definition(tmp_path: Path, env: dict[str, str]) -> None:
    definition = (TEMPLATES / "humanitec" / "opentofu.yaml").read_text()
    path = tmp_path / "definition.yaml"
    path.write_text(definition.replace("${context.res.guresid}", "${resources['config.x'].outputs.name}"))
    result, _ = emulate(path, "create", env, "--endpoint", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "The placeholder ${resources['config.x'].outputs.name} of job variable IAC_RUNNER_STACK_NAME" in result.log
    assert "--placeholder" in result.log

    path.write_text(definition.replace("shared_directory:", "shared_dir:"))
    broken, _ = emulate(path, "create", env)
    assert broken.returncode == 2
    assert "the driver would not run it" in broken.log
    assert f"{path}:24: unknown driver input" in broken.log
