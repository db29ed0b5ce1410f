"""Bad input through the container contract: the contract's exit code, a clear ERROR_FILE, no output files
written, no Python traceback, and no secret in any of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SENTINEL, STACKS, Container, make_repo

TEMPLATE = (STACKS / "s3-bucket" / "cloudformation" / "template.yaml").read_text()
STACK_FILE = "backend: cloudformation\nsecret_outputs: [tokenParameter]\n"
INPUTS = {"bucket": "bad-input-bucket"}
SECRETS = {"apiToken": SENTINEL}
PLUGIN = """
from pathlib import Path

class TofuLike:
    name = "tofulike"
    companions = ()
    def needs_state(self, folder): return True
    def detect(self, folder):
        found = sorted(p.name for p in Path(folder).glob("*.tf"))
        return found[0] if found else None
    def engine_version(self): return "test plugin"
    def declared_inputs(self, folder, stack_file): return {}, False
    def validate(self, ctx): pass
    def plan(self, ctx): raise NotImplementedError
    def apply(self, ctx): return []
    def destroy(self, ctx): pass
    def outputs(self, ctx): return []

BACKEND = TofuLike()
"""


@dataclass
class Case:
    """One bad input: what to change from a good run, and what the error file must say."""

    action: str | None = "create"
    inputs: Any = field(default_factory=lambda: dict(INPUTS))
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    files: dict[str, str] = field(default_factory=lambda: {"template.yaml": TEMPLATE, "iac-runner.yaml": STACK_FILE})
    env: dict[str, str | None] = field(default_factory=dict)
    code: int = 2
    says: tuple[str, ...] = ()


LINT_ERROR = TEMPLATE.replace("      BucketName: !Ref bucket", "      BucketName: !Ref bucket\n      Colour: blue")
NOT_NOECHO = TEMPLATE.replace("    NoEcho: true\n", "")

CASES: dict[str, Case] = {
    "action missing": Case(action=None, says=("ACTION is not set",)),
    "action unknown": Case(action="update", says=("ACTION must be 'create' or 'destroy'", "'update'")),
    "inputs not json": Case(inputs="{bucket: x", says=("not valid JSON", "inputs.json:1")),
    "inputs not an object": Case(inputs="[1, 2]", says=("must hold a JSON object", "array")),
    "unknown input key": Case(
        inputs={**INPUTS, "bukcet": "x"}, says=("'bukcet' is not a parameter", "bucket (String)")
    ),
    "missing required parameter": Case(inputs={}, says=("Required parameter 'bucket'",)),
    "secret to a non-NoEcho parameter": Case(files={"template.yaml": NOT_NOECHO}, says=("without NoEcho", "apiToken")),
    "list to a String parameter": Case(inputs={**INPUTS, "environment": ["a"]}, says=("is a list",)),
    "cfn-lint error": Case(files={"template.yaml": LINT_ERROR}, says=("cfn-lint", "E3002", "template.yaml:30")),
    "template yaml broken": Case(files={"template.yaml": "Resources: [\n"}, says=("cannot be parsed", "E0000")),
    "unknown backend": Case(
        env={"IAC_RUNNER_BACKEND": "terraformz"}, says=("Unknown backend 'terraformz'", "cloudformation")
    ),
    "no stack detected": Case(files={"README.md": "nothing here"}, says=("No stack was detected", "README.md")),
    "two stacks detected": Case(
        files={"template.yaml": TEMPLATE, "main.tf": "# tofu\n"},
        says=("Several kinds of stack", "cloudformation (template.yaml)", "tofulike (main.tf)"),
    ),
    "unknown key in iac-runner.yaml": Case(
        files={"template.yaml": TEMPLATE, "iac-runner.yaml": "backend: cloudformation\nsecret_output: [x]\n"},
        says=("Unknown key 'secret_output'", "iac-runner.yaml:2", "secret_outputs"),
    ),
    "iac-runner.yaml not yaml": Case(
        files={"template.yaml": TEMPLATE, "iac-runner.yaml": "backend: [\n"}, says=("not valid YAML",)
    ),
    "settings file names a missing template": Case(
        files={"tpl.yaml": TEMPLATE, "iac-runner.yaml": "backend: cloudformation\ntemplate: missing.yaml\n"},
        says=("missing.yaml was not found",),
    ),
    "secret_outputs names no output": Case(
        files={"template.yaml": TEMPLATE, "iac-runner.yaml": "secret_outputs: [tokenParam]\n"},
        says=("'tokenParam'", "not an output"),
    ),
    "scripts directory missing": Case(env={"SCRIPTS_DIRECTORY": "/nonexistent/scripts"}, says=("SCRIPTS_DIRECTORY",)),
    "outputs file not writable": Case(
        env={"OUTPUTS_FILE": "/nonexistent/dir/outputs.json"}, says=("cannot be written",)
    ),
    "subpath escapes": Case(env={"IAC_RUNNER_SOURCE_PATH": "../../etc"}, says=("leaves the scripts directory",)),
    "timeout not a number": Case(env={"IAC_RUNNER_TIMEOUT": "soon"}, says=("IAC_RUNNER_TIMEOUT", "valid integer")),
    "unknown IAC_RUNNER_ variable": Case(
        env={"IAC_RUNNER_STATE_URI": "s3://b"}, says=("IAC_RUNNER_STATE_URI", "IAC_RUNNER_STATE_URL")
    ),
    "state url scheme": Case(env={"IAC_RUNNER_STATE_URL": "gs://bucket"}, says=("IAC_RUNNER_STATE_URL", "s3://")),
    "secret and plain input with one name": Case(
        inputs={**INPUTS, "apiToken": "x"}, says=("both as a plain input and as a secret",)
    ),
    "no aws credentials": Case(
        env={
            "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        says=("No AWS credentials",),
    ),
    "aws endpoint unreachable": Case(env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, says=("could not be reached",)),
}


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third-party backend registered through the `iac_runner.backends` entry point group."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "tofulike_backend.py").write_text(PLUGIN)
    info = root / "tofulike_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tofulike-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[iac_runner.backends]\ntofulike = tofulike_backend:BACKEND\n")
    return root


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, container: Container, aws: dict[str, str], plugin_path: Path) -> None:
    case = CASES[name]
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "bad-input", "PYTHONPATH": str(plugin_path)})
    result = container.run(case.action, case.inputs, secrets=case.secrets, env=case.env, files=case.files)
    assert result.returncode == case.code, result.log
    assert "Traceback" not in result.log
    assert not result.files["values"].exists() and not result.files["secrets"].exists(), "nothing half-written"
    error = result.error
    if name != "scripts directory missing":  # the error file's directory itself is missing
        assert error, f"no error file; log:\n{result.log}"
        for phrase in case.says:
            assert phrase in error, f"{phrase!r} not in the error file:\n{error}"
        assert "Fix:" in error
    else:
        for phrase in case.says:
            assert phrase in result.log


def test_unknown_ref_and_unreachable_repo(container: Container, aws: dict[str, str], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo.git")
    container.env.update(
        {**aws, "IAC_RUNNER_SOURCE_URL": repo.as_uri(), "IAC_RUNNER_SOURCE_PATH": "stacks/s3-bucket/cloudformation"}
    )
    unknown = container.run("create", INPUTS, secrets=SECRETS, env={"IAC_RUNNER_SOURCE_REF": "no-such-branch"})
    assert unknown.returncode == 2
    assert "'no-such-branch' does not exist" in unknown.error and "main" in unknown.error

    gone = container.run("create", INPUTS, secrets=SECRETS, env={"IAC_RUNNER_SOURCE_URL": "http://127.0.0.1:9/x.git"})
    assert gone.returncode == 2
    assert "could not be reached" in gone.error and "http://127.0.0.1:9/x.git" in gone.error


def test_outputs_over_one_mebibyte(container: Container, aws: dict[str, str]) -> None:
    big = "x" * 600_000
    template = (
        "Parameters:\n  a:\n    Type: String\n  b:\n    Type: String\n"
        "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
        "Outputs:\n  first:\n    Value: !Ref a\n  second:\n    Value: !Ref b\n  topic:\n    Value: !Ref Topic\n"
    )
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": "big"})
    result = container.run("create", {"a": big, "b": big}, secrets={}, files={"template.yaml": template})
    assert result.returncode == 1, result.log
    assert "over the driver's limit" in result.error and "first (600,002 bytes)" in result.error
    assert not result.files["values"].exists() and not result.files["secrets"].exists()
