"""`iac-runner definition validate DIR`: a GitOps folder of resource definitions checked as the driver and the
runner will see them (the source really checked out of a file:// git repository), each problem as `file:line`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from iac_runner.humanitec.render import TEMPLATES
from tests.helpers import ROOT, base_env, run_cli

URL = "https://git.example.invalid/platform/stacks.git"
# A clean definition; each case below breaks it in one way.
BASE = """\
apiVersion: entity.humanitec.io/v1b1
kind: Definition
metadata:
  id: @NAME@
entity:
  name: @NAME@
  type: s3
  driver_type: humanitec/container
  driver_account: aws-iac-runner
  driver_inputs:
    values:
      job:
        image: ghcr.io/acme/iac-driver-runner:0.1.0
        command: ["iac-runner", "container"]
        shared_directory: /home/runner/workspace
        variables:
          IAC_RUNNER_BACKEND: opentofu
          IAC_RUNNER_SOURCE_PATH: stacks/s3-bucket/opentofu
          IAC_RUNNER_STACK_NAME: ${context.res.guresid}
          IAC_RUNNER_STATE_URL: ${resources['config.iac-runner'].outputs.state_url}
          RESOURCE_INPUTS_FILE: resource-inputs.json
      cluster: ${resources['config.iac-runner'].outputs.cluster}
      credentials_config:
        environment:
          AWS_ACCESS_KEY_ID: AccessKeyId
          AWS_SECRET_ACCESS_KEY: SecretAccessKey
      source:
        url: @URL@
        ref: refs/heads/main
      files:
        resource-inputs.json: |
          {
            "bucket": "${context.app.id}-${context.env.id}",
            "versioning": true
          }
    secret_refs:
      source:
        password:
          store: platform-secrets
          ref: iac-runner/git-token
      job:
        variables:
          IAC_RUNNER_SECRET_apiToken:
            store: platform-secrets
            ref: s3-bucket/api-token
  criteria:
    - class: opentofu
""".replace("@URL@", URL)


@dataclass(frozen=True)
class Case:
    name: str
    old: str
    new: str
    #: The line the problem is reported at: the first line of the broken file holding this text.
    at: str
    message: str


CASES = [
    Case("malformed-yaml", "        image: ghcr", "       image: ghcr", "command: [", "is not valid YAML"),
    Case(
        "missing-field",
        "        image: ghcr.io/acme/iac-driver-runner:0.1.0\n",
        "",
        "      job:",
        "job.image is missing",
    ),
    Case(
        "wrong-type",
        'command: ["iac-runner", "container"]',
        "command: iac-runner container",
        "command:",
        "values.job.command has the wrong type",
    ),
    Case("unknown-input", "      source:\n", "      sources:\n", "sources:", "unknown driver input"),
    Case("unknown-ref", "ref: refs/heads/main", "ref: refs/heads/no-such-branch", "ref:", "does not exist in"),
    Case(
        "missing-path",
        "SOURCE_PATH: stacks/s3-bucket/opentofu",
        "SOURCE_PATH: stacks/s3-bucket/terraform",
        "IAC_RUNNER_SOURCE_PATH",
        "'stacks/s3-bucket/terraform' does not exist",
    ),
    Case(
        "wrong-backend",
        "IAC_RUNNER_BACKEND: opentofu",
        "IAC_RUNNER_BACKEND: cloudformation",
        "IAC_RUNNER_BACKEND",
        "holds no cloudformation stack (it holds a stack of the opentofu backend)",
    ),
    Case(
        "undeclared-input",
        '"versioning": true',
        '"versioning": true,\n            "colour": "blue"',
        '"colour"',
        "input 'colour' is not declared by the opentofu stack",
    ),
    Case(
        "secret-input-as-value",
        "          RESOURCE_INPUTS_FILE",
        "          IAC_RUNNER_SECRET_dbPassword: hunter2-plain\n          RESOURCE_INPUTS_FILE",
        "IAC_RUNNER_SECRET_dbPassword",
        "job variable IAC_RUNNER_SECRET_dbPassword is a secret passed as a plain value",
    ),
    Case(
        "password-as-value",
        "          RESOURCE_INPUTS_FILE",
        "          DB_PASSWORD: hunter2-plain\n          RESOURCE_INPUTS_FILE",
        "DB_PASSWORD",
        "job variable DB_PASSWORD is a secret passed as a plain value",
    ),
    Case(
        "token-in-source",
        "        ref: refs/heads/main\n",
        "        ref: refs/heads/main\n        password: ghp-plain-token\n",
        "password: ghp",
        "source.password is a secret passed as a plain value",
    ),
    Case(
        "stack-secret-in-inputs-file",
        '"versioning": true',
        '"versioning": true,\n            "apiToken": "plain-token"',
        '"apiToken"',
        "input 'apiToken' is a secret of the stack, passed as a plain value",
    ),
    Case(
        "unknown-setting",
        "          RESOURCE_INPUTS_FILE",
        "          IAC_RUNNER_STATEURL: s3://bucket/x\n          RESOURCE_INPUTS_FILE",
        "IAC_RUNNER_STATEURL",
        "not a setting of iac-runner (did you mean IAC_RUNNER_STATE_URL?)",
    ),
    Case(
        "no-state-url",
        "          IAC_RUNNER_STATE_URL: ${resources['config.iac-runner'].outputs.state_url}\n",
        "",
        "        variables:",
        "IAC_RUNNER_STATE_URL is not set",
    ),
    Case(
        "bad-state-url",
        "IAC_RUNNER_STATE_URL: ${resources['config.iac-runner'].outputs.state_url}",
        "IAC_RUNNER_STATE_URL: http://state.example.com/x",
        "IAC_RUNNER_STATE_URL",
        "must be file:///absolute/dir or s3://bucket[/prefix]",
    ),
    Case("inputs-not-json", '"versioning": true', '"versioning": yes', '"versioning": yes', "is not valid JSON"),
    Case(
        "missing-required-input",
        '            "bucket": "${context.app.id}-${context.env.id}",\n',
        "",
        "resource-inputs.json:",
        "requires input 'bucket'",
    ),
    Case(
        "duplicate-key",
        "        ref: refs/heads/main\n",
        "        ref: refs/heads/main\n        ref: main\n",
        "ref: main",
        "duplicate key",
    ),
    Case(
        "placeholder-syntax",
        "cluster: ${resources['config.iac-runner'].outputs.cluster}",
        "cluster: resources.config.cluster",
        "cluster:",
        "must be an object or a single ${...} placeholder",
    ),
    Case(
        "criteria-object",
        "  criteria:\n    - class: opentofu\n",
        "  criteria: {}\n",
        "criteria: {}",
        "entity.criteria has the wrong type: it must be a list (got a mapping)",
    ),
    Case(
        "pulumi-without-passphrase",
        "IAC_RUNNER_BACKEND: opentofu",
        "IAC_RUNNER_BACKEND: pulumi",
        "      job:\n        variables:",
        "needs PULUMI_CONFIG_PASSPHRASE",
    ),
]


def line_of(text: str, needle: str) -> int:
    """The line of the needle's last line, at its first occurrence."""
    return text[: text.index(needle) + len(needle)].count("\n") + 1


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("gitops")
    texts = {}
    for case in CASES:
        assert case.old in BASE, case.name
        text = BASE.replace("@NAME@", case.name).replace(case.old, case.new, 1)
        (folder / f"{case.name}.yaml").write_text(text)
        texts[case.name] = text
    (folder / "clean.yaml").write_text(BASE.replace("@NAME@", "clean"))
    (folder / "same-id.yaml").write_text(BASE.replace("@NAME@", "clean"))
    (folder / "README.md").write_text("not a definition\n")
    (folder / "kustomization.yaml").write_text("resources: []\n")
    return folder, texts


@pytest.fixture(scope="module")
def report(broken: tuple[Path, dict[str, str]], stacks_repo: Path) -> tuple[int, str]:
    folder, _ = broken
    result = run_cli(["definition", "validate", str(folder), "--url-map", f"{URL}={stacks_repo.as_uri()}"], base_env())
    return result.returncode, result.stdout


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_broken_definition_is_reported_at_its_line(
    case: Case, broken: tuple[Path, dict[str, str]], report: tuple[int, str]
) -> None:
    code, stdout = report
    assert code == 2
    text = broken[1][case.name]
    line = line_of(text, case.at)
    reported = [x for x in stdout.splitlines() if re.search(rf"/{re.escape(case.name)}\.yaml:\d+: ", x)]
    assert reported, f"{case.name}: nothing reported\n{stdout}"
    assert any(f"{case.name}.yaml:{line}: " in x and case.message in x for x in reported), (
        f"{case.name}: expected line {line} with {case.message!r}; got:\n" + "\n".join(reported)
    )


def test_clean_definitions_pass_and_other_files_are_skipped(report: tuple[int, str]) -> None:
    _, stdout = report
    assert not [x for x in stdout.splitlines() if re.match(r"\S*/clean\.yaml:", x)]
    assert "README.md:" not in stdout and "kustomization.yaml:" not in stdout
    same = [x for x in stdout.splitlines() if "/same-id.yaml:4: " in x]
    assert same and "metadata.id 'clean' is already used at" in same[0]
    assert "plain-token" not in stdout and "hunter2" not in stdout, "secret values are never echoed"
    # The malformed file holds no definition; the two clean ones do; kustomization.yaml is no definition.
    assert f"{len(CASES) + 1} definition(s) in {len(CASES) + 3} file(s) checked" in stdout


def test_examples_gitops_pass(stacks_repo: Path) -> None:
    url_map = f"https://github.com/acme/iac-driver-runner.git={stacks_repo.as_uri()}"
    result = run_cli(["definition", "validate", str(ROOT / "examples" / "gitops"), "--url-map", url_map], base_env())
    assert result.returncode == 0, result.log
    assert "4 definition(s) in 4 file(s) checked: no problems" in result.stdout
    assert result.log.count("resolved to commit") == 3, "each container definition's source was checked out"


def test_templates_pass_offline_and_nothing_to_check_is_an_error(tmp_path: Path) -> None:
    result = run_cli(["definition", "validate", str(TEMPLATES / "humanitec"), "--offline"], base_env())
    assert result.returncode == 0, result.log
    assert "4 definition(s) in 4 file(s) checked: no problems" in result.stdout
    empty = run_cli(["definition", "validate", str(tmp_path)], base_env())
    assert empty.returncode == 2 and "0 definition(s)" in empty.stdout


# -- the stack's own files in `files`, in every layout ------------------------------------------------------------

TFVARS = '{"bucket": "${context.app.id}-${context.env.id}", "versioning": true}'
BACKEND_TF = """\
terraform {
  backend "s3" {
    bucket = "acme-tofu-state"
    key    = "${context.res.guresid}/terraform.tfstate"
    region = "eu-west-1"
  }
}
"""
INLINE_TF = """\
variable "bucket" {
  type = string
}

variable "versioning" {
  type    = bool
  default = false
}

resource "terraform_data" "bucket" {
  input = var.bucket
}
"""
API_TOKEN = """\
    secret_refs:
      job:
        variables:
          IAC_RUNNER_SECRET_apiToken:
            store: platform-secrets
            ref: s3-bucket/api-token
"""


def indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


def own_files_definition(name: str, variables: dict[str, str], source: str, files: dict[str, str], secrets: str) -> str:
    """A definition that gives its stack's inputs and state through the stack's own files (tfvars, backend.tf)
    in `files`: no inputs file, no IAC_RUNNER_STATE_URL."""
    lines = "".join(f"          {k}: {v}\n" for k, v in {"IAC_RUNNER_BACKEND": "opentofu", **variables}.items())
    entries = "".join(f"        {path}: |\n{indent(text.rstrip() + chr(10), 10)}" for path, text in files.items())
    return f"""\
apiVersion: entity.humanitec.io/v1b1
kind: Definition
metadata:
  id: {name}
entity:
  name: {name}
  type: s3
  driver_type: humanitec/container
  driver_inputs:
    values:
      job:
        image: ghcr.io/acme/iac-driver-runner:0.1.0
        command: ["iac-runner", "container"]
        shared_directory: /home/runner/workspace
        variables:
{lines}      cluster: ${{resources['config.iac-runner'].outputs.cluster}}
{source}      files:
{entries}{secrets}  criteria:
    - class: {name}
"""


STACK = "stacks/s3-bucket/opentofu"
DRIVER_SOURCE = f"      source:\n        url: {URL}\n        ref: refs/heads/main\n"
OWN_FILES = {"terraform.tfvars.json": TFVARS, "backend.tf": BACKEND_TF}
LAYOUTS = {
    # The driver checks the whole repository out; the runner takes the stack's subfolder.
    "driver-checkout": ({"IAC_RUNNER_SOURCE_PATH": STACK}, DRIVER_SOURCE, OWN_FILES, API_TOKEN),
    # The driver checks out only the stack's folder: it is the shared directory.
    "driver-checkout-path": ({}, DRIVER_SOURCE + f"        path: {STACK}\n", OWN_FILES, API_TOKEN),
    # The runner checks the stack out itself.
    "runner-checkout": (
        {"IAC_RUNNER_SOURCE_URL": URL, "IAC_RUNNER_SOURCE_REF": "main", "IAC_RUNNER_SOURCE_PATH": STACK},
        "",
        OWN_FILES,
        API_TOKEN,
    ),
    # No checkout: the stack itself is in `files`, in a subfolder.
    "no-checkout": ({"IAC_RUNNER_SOURCE_PATH": "stack"}, "", {**OWN_FILES, "stack/main.tf": INLINE_TF}, ""),
}


def test_the_stack_own_files_give_inputs_and_state_in_every_layout(tmp_path: Path, stacks_repo: Path) -> None:
    """tfvars and backend.tf written at the shared directory's root join the stack wherever it is, as in the
    runner's job: they give the required inputs and the state. One without `bucket` in its tfvars is told so at
    its `files`, with a fix that names them."""
    for name, (variables, source, files, secrets) in LAYOUTS.items():
        (tmp_path / f"{name}.yaml").write_text(own_files_definition(name, variables, source, files, secrets))
    lacking = {**OWN_FILES, "terraform.tfvars.json": '{"versioning": true}'}
    text = own_files_definition("no-bucket", *LAYOUTS["driver-checkout"][:2], lacking, API_TOKEN)
    (tmp_path / "no-bucket.yaml").write_text(text)
    url_map = f"{URL}={stacks_repo.as_uri()}"
    result = run_cli(["definition", "validate", str(tmp_path), "--url-map", url_map], base_env())
    assert result.returncode == 2
    problems = [line for line in result.stdout.splitlines() if re.match(r"\S+\.yaml:\d+: ", line)]
    assert len(problems) == 1, result.stdout
    at = line_of(text, "terraform.tfvars.json:")
    assert f"no-bucket.yaml:{at}: the opentofu stack requires input 'bucket'" in problems[0]
    assert "or in the stack's own variables file, written beside it by `files`" in result.stdout
    assert "Add it to the inputs file" not in result.stdout
    assert "5 definition(s) in 5 file(s) checked: 1 problem(s)" in result.stdout


JSON_TF = """\
{
  "variable": {"bucket": {"type": "string"}, "token": {"type": "string", "sensitive": true}},
  "resource": {"terraform_data": {"bucket": {"input": "${var.bucket}"}}},
  "output": {"bucket": {"value": "${terraform_data.bucket.output}"}}
}
"""
BACKEND_TF_JSON = '{"terraform": {"backend": {"s3": {"bucket": "acme-tofu-state", "key": "k", "region": "eu-west-1"}}}}'


def test_a_json_syntax_stack_has_its_inputs_and_backend_checked(tmp_path: Path) -> None:
    """Variables, sensitive flags and the backend read from *.tf.json as from HCL: the stack's own JSON backend
    needs no IAC_RUNNER_STATE_URL, `bucket` from its tfvars counts, and the sensitive `token` with no value is
    named."""
    files = {
        "terraform.tfvars.json": '{"bucket": "b"}',
        "backend.tf.json": BACKEND_TF_JSON,
        "stack/main.tf.json": JSON_TF,
    }
    text = own_files_definition("json-stack", {"IAC_RUNNER_SOURCE_PATH": "stack"}, "", files, "")
    (tmp_path / "json-stack.yaml").write_text(text)
    result = run_cli(["definition", "validate", str(tmp_path)], base_env())
    assert result.returncode == 2, result.stdout
    problems = [line for line in result.stdout.splitlines() if re.match(r"\S+\.yaml:\d+: ", line)]
    assert len(problems) == 1 and "requires input 'token'" in problems[0], result.stdout
    assert "IAC_RUNNER_STATE_URL" not in result.stdout
