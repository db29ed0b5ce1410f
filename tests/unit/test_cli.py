from __future__ import annotations

import subprocess
import sys

HEAVY = ("boto3", "botocore", "pulumi", "cfnlint", "git", "pydantic")


def test_help_imports_no_engine_sdk() -> None:
    code = (
        "import sys\nfrom iac_runner.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED:\n" in out or out.rstrip().endswith("LOADED:"), out


def test_every_command_has_help() -> None:
    for command in ("container", "apply", "destroy", "plan", "outputs", "validate", "backends", "demo"):
        done = subprocess.run(
            [sys.executable, "-m", "iac_runner", command, "--help"], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 and "usage: iac-runner" in done.stdout


def test_backends_lists_cloudformation_with_its_version() -> None:
    done = subprocess.run([sys.executable, "-m", "iac_runner", "backends"], capture_output=True, text=True, check=True)
    assert "cloudformation" in done.stdout and "botocore" in done.stdout
