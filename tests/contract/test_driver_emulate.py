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
import yaml

from iac_runner.common import paths
from iac_runner.humanitec.model import Definition, context_values
from iac_runner.humanitec.render import TEMPLATES
from tests.helpers import ROOT, SENTINEL, Result, base_env, run_cli, s3_client, s3_example

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


# -- the driver's ways that the templates do not use -----------------------------------------------------------

# An offline stack (built-ins only): a plain input, a secret one, an output of each.
GREETING_TF = """\
variable "name" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

resource "terraform_data" "greeting" {
  input = "hello $\\{var.name}"
}

output "greeting" {
  value = terraform_data.greeting.output
}

output "token" {
  value     = var.token
  sensitive = true
}
"""


def indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def container_definition(ident: str, job: str, files: dict[str, str], secret: str | None = None) -> str:
    """A humanitec/container definition; `job` is its YAML (an object or a placeholder), `files` its files,
    `secret` the name of a secret job variable read from the secret store."""
    entries = "".join(f"        {name}: |\n{indent(text, 10)}" for name, text in files.items())
    store = f"\n          {secret}:\n            store: platform-secrets\n            ref: {ident}/{secret}"
    secret_variables = store if secret else "{}"
    return f"""\
apiVersion: entity.humanitec.io/v1b1
kind: Definition
metadata:
  id: {ident}
entity:
  name: {ident}
  type: s3
  driver_type: humanitec/container
  driver_account: aws-iac-runner
  driver_inputs:
    values:
      job: {job}
      cluster:
        cluster_type: ${{resources['config.runner'].outputs.cluster.cluster_type}}
        account: ${{resources['config.runner'].outputs.cluster.account}}
      credentials_config:
        environment:
          AWS_ACCESS_KEY_ID: AccessKeyId
          AWS_SECRET_ACCESS_KEY: SecretAccessKey
      files:
{entries}    secret_refs:
      cluster:
        agent_url:
          value: ${{resources['config.runner'].outputs.agent_url}}
      job:
        variables: {secret_variables}
  criteria:
    - env_type: development
"""


def config_definition(ident: str, criteria: str, image: str, command: str = '["iac-runner", "container"]') -> str:
    """The orchestrator's config pattern: an echo definition whose outputs are a job and a cluster."""
    return f"""\
apiVersion: entity.humanitec.io/v1b1
kind: Definition
metadata:
  id: {ident}
entity:
  name: {ident}
  type: config
  driver_type: humanitec/echo
  driver_inputs:
    values:
      job:
        image: {image}
        command: {command}
        shared_directory: /home/runner/workspace
        namespace: humanitec-runner
        service_account: humanitec-runner-job
        variables:
          IAC_RUNNER_TIMEOUT: "900"
      cluster:
        cluster_type: eks
        account: acme/aws-runner
        cluster:
          name: runners
          region: eu-west-1
          loadbalancer: 10.0.0.10
    secret_refs:
      agent_url:
        value: ${{resources['agent.default#agent'].outputs.url}}
  criteria:
{indent(criteria, 4)}"""


SCRIPT_JOB = '{image: ghcr.io/acme/tofu-job:1.0.0, command: ["/bin/sh", "/home/runner/workspace/run.sh"], ' + (
    "shared_directory: /home/runner/workspace}"
)
# A job in the style of the orchestrator's examples: it works in the stack's folder and writes the driver's files
# from there, through the paths the driver gives it.
RUN_SH = """\
#!/bin/sh
set -eu
cd "$SCRIPTS_DIRECTORY/stack"
tofu init -input=false -no-color >&2
if [ "$ACTION" = create ]; then
  tofu apply -auto-approve -input=false -no-color >&2
  printf '{"greeting": %s}\\n' "$(tofu output -json greeting)" > "$OUTPUTS_FILE"
  printf '{"token": %s}\\n' "$(tofu output -json token)" > "$SECRET_OUTPUTS_FILE"
else
  tofu destroy -auto-approve -input=false -no-color >&2
  echo '{}' > "$OUTPUTS_FILE"
  echo '{}' > "$SECRET_OUTPUTS_FILE"
fi
"""


def with_tofu(env: dict[str, str]) -> dict[str, str]:
    """tofu on PATH for a job script; the stack needs no providers, so no CLI configuration (a configured file that
    is missing makes tofu warn on stdout, into `output -json`)."""
    tofu = paths.find_executable("tofu")
    assert tofu, "tofu is neither on PATH nor in .tools/bin: run `make tools`"
    env = {k: v for k, v in env.items() if k != "TF_CLI_CONFIG_FILE"}
    return {**env, "PATH": f"{Path(tofu).parent}:{env['PATH']}"}


def test_a_job_script_that_changes_directory_writes_where_the_driver_reads(tmp_path: Path, env: dict[str, str]) -> None:
    """The driver's file variables are absolute: a script that `cd`s into the stack still writes the outputs where
    the driver reads them. Real tofu, in a subfolder of the shared directory; the secret input through the job's
    environment (TF_VAR_token) and back as a secret output."""
    files = {
        "run.sh": RUN_SH,
        "stack/main.tf": GREETING_TF,
        "stack/terraform.tfvars.json": '{"name": "${context.app.id}"}\n',
    }
    definition = tmp_path / "greeting.yaml"
    definition.write_text(container_definition("greeting-script", SCRIPT_JOB, files, "TF_VAR_token"))
    env = with_tofu({**env, "TF_VAR_token": SENTINEL})

    created, summary = emulate(definition, "create", env, "--endpoint", "http://127.0.0.1:1")
    created.assert_ok()
    assert summary["outputs"] == {"greeting": "hello demo-app"}
    assert summary["secret_outputs"] == {"token": "***"}
    assert "TF_VAR_token" in created.log and "OUTPUTS_FILE" not in created.log.split("job environment:")[1]
    assert "IAC_RUNNER_STATE_URL" not in created.log, "a job that is not the runner gets no runner settings"


@pytest.mark.parametrize(
    ("script", "code", "message"),
    [
        ("cd /\nexit 0\n", 1, "The job exited 0, but OUTPUTS_FILE ("),
        ("cd /\necho '{}' > \"$OUTPUTS_FILE\"\necho '[]' > \"$SECRET_OUTPUTS_FILE\"\n", 1, "does not hold a JSON obj"),
        ("cd /\necho 'no bucket for you' > \"$ERROR_FILE\"\nexit 3\n", 3, "no bucket for you"),
    ],
    ids=["no-outputs", "not-an-object", "error-file"],
)
def test_what_a_job_leaves_is_judged_as_the_driver_judges_it(
    script: str, code: int, message: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """A job that exits 0 without both output files fails, as under the driver; the error file is read from where
    the driver's absolute ERROR_FILE points, whatever directory the job is in."""
    definition = tmp_path / "script.yaml"
    definition.write_text(container_definition("script-job", SCRIPT_JOB, {"run.sh": f"#!/bin/sh\n{script}"}))
    result, summary = emulate(definition, "create", env, "--endpoint", "http://127.0.0.1:1")
    assert result.returncode == code, result.log
    assert summary["exit_code"] == code and summary["outputs"] == {}
    assert message in str(summary["error"])
    if code == 1:
        assert "the Container Driver fails such a run" in result.log
        assert f"{definition}:" in str(summary["error"]), "the error names the job's command in the definition"


def test_a_job_from_a_config_definition_runs_with_the_stack_own_backend(
    tmp_path: Path, env: dict[str, str], aws: dict[str, str]
) -> None:
    """The orchestrator's config pattern (its inline-terraform example): the job is `${resources['config.runner']
    .outputs.job}`, read from the most specific matching config definition beside it; the stack, its tfvars and
    its `backend.tf` come from `files`. The state is the stack's own, at its key in S3; the runner is not given an
    IAC_RUNNER_STATE_URL the definition never set. create, create (no changes), destroy, destroy."""
    folder = tmp_path / "gitops"
    folder.mkdir()
    files = {
        "main.tf": GREETING_TF,
        "terraform.tfvars.json": '{"name": "${context.app.id}-${context.env.id}"}\n',
        "backend.tf": 'terraform {\n  backend "s3" {\n    bucket = "emulate-state"\n'
        '    key    = "${context.res.guresid}/state/terraform.tfstate"\n    region = "us-east-1"\n  }\n}\n',
    }
    job = "${resources['config.runner'].outputs.job}"
    text = container_definition("greeting-inline", job, files, "IAC_RUNNER_SECRET_token")
    definition = folder / "greeting.yaml"
    definition.write_text(text)
    # Two configs match class runner; the one that also names the env type is more specific, so it is chosen.
    (folder / "runner-any.yaml").write_text(config_definition("runner-any", "- class: runner\n", "ghcr.io/acme/x:0"))
    chosen = config_definition("runner-dev", "- env_type: development\n  class: runner\n", "ghcr.io/acme/r:1")
    (folder / "runner-dev.yaml").write_text(chosen)
    (folder / "other-app.yaml").write_text(
        config_definition("runner-other", "- app_id: other\n  class: runner\n", "ghcr.io/acme/x:0")
    )
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="emulate-state")
    guresid = context_values(Definition.model_validate(yaml.safe_load(text)), {})["context.res.guresid"]
    key = f"{guresid}/state/terraform.tfstate"
    env = {**env, "IAC_RUNNER_SECRET_token": SENTINEL}
    cloud = ["--endpoint", aws["AWS_ENDPOINT_URL"]]

    created, summary = emulate(definition, "create", env, *cloud)
    created.assert_ok()
    assert f"job: {folder / 'runner-dev.yaml'}:{line_of(chosen, 'job:')}" in created.log
    assert summary["outputs"] == {"greeting": "hello demo-app-development"}
    assert summary["secret_outputs"] == {"token": "***"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="emulate-state")["Contents"]] == [key]
    environment = created.log.split("job environment:")[1].splitlines()[0]
    assert "IAC_RUNNER_TIMEOUT" in environment and "IAC_RUNNER_STATE_URL" not in environment
    assert "IAC_RUNNER_STATE_URL is ignored" not in created.log

    unchanged, summary = emulate(definition, "create", env, *cloud)
    unchanged.assert_ok()
    assert NO_CHANGES["opentofu"] in unchanged.log and summary["outputs"] == {"greeting": "hello demo-app-development"}

    destroyed, summary = emulate(definition, "destroy", env, *cloud)
    destroyed.assert_ok()
    assert summary == {"exit_code": 0, "outputs": {}, "secret_outputs": {}, "error": None}
    again, _ = emulate(definition, "destroy", env, *cloud)
    again.assert_ok()
    assert "nothing to destroy" in again.log
    state = json.loads(s3.get_object(Bucket="emulate-state", Key=key)["Body"].read())
    assert state["resources"] == [], "the stack's own state is where its backend.tf says, emptied by destroy"


def test_config_references_that_match_nothing_and_config_files(tmp_path: Path, env: dict[str, str]) -> None:
    """No config matches in the context asked for: exit 2, each candidate with the reason it does not match.
    `--config FILE` reads the config from elsewhere, and a problem of its job is reported at that file's line."""
    folder = tmp_path / "gitops"
    folder.mkdir()
    job = "${resources['config.runner'].outputs.job}"
    definition = folder / "s3.yaml"
    text = container_definition("s3-inline", job, {"main.tf": GREETING_TF})
    definition.write_text(text)
    config = config_definition("runner-dev", "- env_type: development\n  class: runner\n", "ghcr.io/acme/r:1")
    (folder / "runner.yaml").write_text(config)
    quick = ["--endpoint", "http://127.0.0.1:1"]

    other, _ = emulate(definition, "create", env, *quick, "--placeholder", "context.env.type=production")
    assert other.returncode == 2, other.log
    assert (
        "no 'config' definition in" in other.log and "matches resources['config.runner#shared.s3-inline']" in other.log
    )
    assert "runner-dev (" in other.log and "env_type 'development', not 'production'" in other.log
    assert f"{definition}:{line_of(text, 'job:')}" in other.log
    assert "--config FILE" in other.log and "==> job:" not in other.log

    elsewhere = tmp_path / "configs" / "runner.yaml"
    elsewhere.parent.mkdir()
    script = config.replace('["iac-runner", "container"]', '["/opt/container"]')
    elsewhere.write_text(script)
    (folder / "runner.yaml").unlink()
    given, _ = emulate(definition, "create", env, *quick, "--config", str(elsewhere))
    assert given.returncode == 2, given.log
    assert f"{elsewhere}:{line_of(script, 'command:')} (job.command)" in given.log
    assert "`/opt/container` starts /opt/container, a program of the image ghcr.io/acme/r:1" in given.log
    assert "--docker" in given.log and "iac-runner backends" not in given.log


@pytest.mark.parametrize(
    ("command", "message", "fix"),
    [
        ('["tofu-wrapper", "apply"]', "starts tofu-wrapper, which is not on PATH here", "Check the spelling"),
        ('["/home/runner/workspace/scripts/run.sh"]', "which is not in the shared directory", "files.scripts/run.sh"),
    ],
    ids=["not-on-path", "not-in-files"],
)
def test_a_missing_job_program_is_named_with_the_fix(
    command: str, message: str, fix: str, tmp_path: Path, env: dict[str, str]
) -> None:
    job = f"{{image: ghcr.io/acme/job:1, command: {command}, shared_directory: /home/runner/workspace}}"
    text = container_definition("missing-program", job, {"main.tf": GREETING_TF})
    definition = tmp_path / "definition.yaml"
    definition.write_text(text)
    result, _ = emulate(definition, "create", env, "--endpoint", "http://127.0.0.1:1")
    assert result.returncode == 2, result.log
    assert message in result.log and fix in result.log
    assert f"{definition}:{line_of(text, 'job:')} (job.command)" in result.log
    assert "iac-runner backends" not in result.log


# -- the README's definition ------------------------------------------------------------------------------------

README_SOURCE = "https://github.com/acme/platform-stacks.git"


def readme_definition() -> str:
    """The complete definition the README's "Use it from Humanitec" section shows."""
    section = (ROOT / "README.md").read_text().split("## Use it from Humanitec\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_definition_passes_validate(tmp_path: Path, stacks_repo: Path) -> None:
    """Its tfvars and backend.tf join the stack in its subfolder: every required input is given, and no
    IAC_RUNNER_STATE_URL is wanted."""
    (tmp_path / "s3-bucket-opentofu.yaml").write_text(readme_definition())
    url_map = f"{README_SOURCE}={stacks_repo.as_uri()}"
    result = run_cli(["definition", "validate", str(tmp_path), "--url-map", url_map], base_env())
    assert result.returncode == 0, result.log
    assert "1 definition(s) in 1 file(s) checked: no problems" in result.stdout
    assert "backend.tf, terraform.tfvars.json from `files` join the stack in stacks/s3-bucket/opentofu" in result.log


def test_the_readme_definition_runs_like_the_driver(
    tmp_path: Path, env: dict[str, str], stacks_repo: Path, aws: dict[str, str]
) -> None:
    """The README's definition as it is (its repository mapped to the test's): the inputs from its tfvars, the state
    where its backend.tf says, one key per resource. create, create (no changes), destroy, destroy."""
    text = readme_definition()
    definition = tmp_path / "s3-bucket-opentofu.yaml"
    definition.write_text(text)
    s3 = s3_client(aws)
    s3.create_bucket(Bucket="acme-tofu-state", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    guresid = context_values(Definition.model_validate(yaml.safe_load(text)), {})["context.res.guresid"]
    key = f"humanitec/{guresid}/terraform.tfstate"
    bucket = "demo-app-development-tofu"
    values = {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "region": "us-east-1"}
    args = ["--endpoint", aws["AWS_ENDPOINT_URL"], "--url-map", f"{README_SOURCE}={stacks_repo.as_uri()}"]

    created, summary = emulate(definition, "create", env, *args)
    created.assert_ok()
    assert summary["outputs"] == values and summary["secret_outputs"] == {"tokenParameter": "***"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="acme-tofu-state")["Contents"]] == [key]
    assert "IAC_RUNNER_STATE_URL" not in created.log.split("job environment:")[1].splitlines()[0]

    unchanged, summary = emulate(definition, "create", env, *args)
    unchanged.assert_ok()
    assert NO_CHANGES["opentofu"] in unchanged.log and summary["outputs"] == values

    destroyed, _ = emulate(definition, "destroy", env, *args)
    destroyed.assert_ok()
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    again, summary = emulate(definition, "destroy", env, *args)
    again.assert_ok()
    assert summary == {"exit_code": 0, "outputs": {}, "secret_outputs": {}, "error": None}
