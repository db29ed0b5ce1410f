"""The package as users install it: a wheel built from the repository carries its templates (package data), and the
installed runner — not this checkout — renders and validates definitions with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, base_env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(out.glob("iac_driver_runner-*.whl"))


def test_the_wheel_holds_the_templates_and_one_import_root(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "iac_runner/humanitec/templates/humanitec/opentofu.yaml" in names
    assert "iac_runner/humanitec/templates/kubernetes/job.yaml" in names
    roots = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert roots == {"iac_runner", "backends"}, "only the package and the deprecated backends.base shim"


def test_the_installed_wheel_renders_and_validates(wheel: Path, tmp_path: Path) -> None:
    """The wheel installed (without its dependencies, which this venv has) into a folder of its own, run from
    elsewhere: the checkout is not on the path, only the installed files."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = base_env({"PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"})
    argv = [sys.executable, "-m", "iac_runner"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)

    located = run("--help")
    assert located.returncode == 0, located.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import iac_runner, sys; sys.stdout.write(iac_runner.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(target)), f"imported from {where}, not the installed wheel"

    rendered = run(
        "definition", "render", "--backend", "opentofu", "--source-url", "https://git.example.com/stacks.git",
        "--path", "stacks/s3", "--resource-type", "s3", "--id", "s3-bucket", "--image", "runner:1",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "IAC_RUNNER_BACKEND: opentofu" in rendered.stdout
    definition = tmp_path / "defs" / "s3.yaml"
    definition.parent.mkdir()
    definition.write_text(rendered.stdout)
    validated = run("definition", "validate", "--offline", str(definition.parent))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "1 definition(s) in 1 file(s) checked: no problems" in validated.stdout
    assert os.path.isdir(target / "iac_runner" / "humanitec" / "templates")


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_the_wheel_with_its_pulumi_extra_installs_and_runs_on_newer_pythons(
    version: str, wheel: Path, tmp_path: Path
) -> None:
    """`pip install 'iac-driver-runner[pulumi]'` on Python 3.12 and 3.13 (wheels only, resolved from the index):
    the Automation API imports and `iac-runner backends` names the SDK. (3.11 is this suite's own interpreter.)"""
    python = shutil.which(f"python{version}")
    if python is None:
        reason = f"no python{version} on PATH: the install check on Python {version} needs that interpreter"
        print(reason)
        pytest.skip(reason)
    venv = tmp_path / "venv"
    # A pyenv shim picks its interpreter from PYENV_VERSION (a prefix such as 3.12 is enough); others ignore it.
    env = {**os.environ, "PYENV_VERSION": version}
    made = subprocess.run(
        [python, "-m", "venv", str(venv)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if made.returncode != 0:
        reason = f"python{version} on PATH does not run ({made.stderr.strip()[:200]})"
        print(reason)
        pytest.skip(reason)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--only-binary", ":all:", f"{wheel}[pulumi]"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    backends = subprocess.run(
        [str(venv / "bin" / "iac-runner"), "backends"],
        env=base_env({"PATH": f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"}),  # the pinned CLI
        capture_output=True,
        text=True,
        check=False,
    )
    assert backends.returncode == 0, backends.stderr
    assert "Automation API 3." in backends.stdout, backends.stdout
