"""The pulumi backend's engine side without running an engine: which pairings it refuses (exit 2), the SDK floor,
and the Python it gives the program."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from iac_runner.backends.base import EngineUnavailable
from iac_runner.backends.pulumi import engine
from iac_runner.backends.pulumi.project import Project
from iac_runner.common.errors import ConfigError

HOST = "/tools/pulumi-language-python"


def pairing(cli: str, host: str | None = "3.79.0") -> engine.Engine:
    return engine.Engine("/tools/pulumi", cli, HOST if host else None, host, "3.272.0")


def test_describe_names_cli_host_and_sdk_with_versions() -> None:
    assert pairing("3.276.0").describe() == (
        f"pulumi v3.276.0 (/tools/pulumi), language host v3.79.0 ({HOST}), Automation API 3.272.0"
    )


@pytest.mark.parametrize("cli", ["3.276.0", "3.200.0", "3.80.0"])
def test_a_newer_cli_runs_the_old_host_with_any_option(cli: str) -> None:
    """A CLI after 3.79 sends the options over gRPC, which the 3.79 host ignores: the runner makes the venv."""
    pairing(cli).check({"toolchain": "pip", "virtualenv": "venv"}, "Pulumi.yaml")


def test_toolchain_through_a_3_79_cli_is_refused_with_the_versions_and_the_fix() -> None:
    with pytest.raises(ConfigError) as raised:
        pairing("3.79.0").check({"toolchain": "pip", "virtualenv": "venv"}, "Pulumi.yaml: runtime.options")
    error = raised.value
    assert error.exit_code == 2
    assert "pulumi v3.79.0" in error.summary and "language host v3.79.0" in error.summary
    assert "-toolchain" in error.summary and "make tools" in error.fix
    pairing("3.79.0").check({"virtualenv": "venv"}, "Pulumi.yaml")  # what 3.79 knows passes


def test_no_language_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no Python language host"):
        pairing("3.276.0", host=None).check({}, "Pulumi.yaml")


@pytest.mark.parametrize(("sdk", "ok"), [("3.206.0", True), ("3.272.0", True), ("3.205.1", False), ("3.79.0", False)])
def test_the_automation_api_floor(monkeypatch: pytest.MonkeyPatch, sdk: str, ok: bool) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: sdk if name == "pulumi" else real(name))
    if ok:
        assert engine.sdk_version() == sdk
    else:
        with pytest.raises(EngineUnavailable, match=rf"pulumi {sdk}, older than 3\.206\.0.*pip install"):
            engine.sdk_version()


def test_a_virtualenv_is_activated_for_every_pairing(tmp_path: Path) -> None:
    """bin/ first on PATH, and a bare `python`: a 3.79 host given `-virtualenv` looks the name up inside it."""
    env = {"PATH": "/usr/bin", "PYTHONHOME": "/elsewhere", "PULUMI_PYTHON_CMD": "/usr/bin/python3"}
    engine.activate(env, tmp_path / "venv")
    assert env == {
        "PATH": f"{tmp_path}/venv/bin:/usr/bin",
        "VIRTUAL_ENV": str(tmp_path / "venv"),
        "PULUMI_PYTHON_CMD": "python",
    }


def test_without_a_virtualenv_the_program_gets_the_runners_python() -> None:
    env: dict[str, str] = {}
    engine.activate(env, None)
    assert env == {"PULUMI_PYTHON_CMD": sys.executable}


@pytest.mark.parametrize(
    ("options", "ok"),
    [("{toolchain: pip, virtualenv: venv}", True), ("{virtualenv: venv}", True), ("{toolchain: uv}", False)],
)
def test_runtime_options_the_runner_can_honour(tmp_path: Path, options: str, ok: bool) -> None:
    (tmp_path / "Pulumi.yaml").write_text(f"name: p\nruntime:\n  name: python\n  options: {options}\n")
    if ok:
        assert Project.load(tmp_path).options
    else:
        with pytest.raises(ConfigError, match="The runtime option 'toolchain' is not supported with 'uv'"):
            Project.load(tmp_path)
