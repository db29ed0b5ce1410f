"""Resource definitions and Job manifests: the templates, what `definition render` makes of them (checked against
the definition's pydantic model and the Kubernetes schema), the static checks with their lines, placeholders, and
the inputs each example stack declares."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from iac_runner import backends
from iac_runner.common.errors import ConfigError
from iac_runner.humanitec import emulate
from iac_runner.humanitec.document import load_file
from iac_runner.humanitec.model import (
    ContainerInputs,
    Definition,
    Job,
    context_values,
    resolve,
)
from iac_runner.humanitec.render import TEMPLATES, RenderRequest, check_manifest, render
from iac_runner.humanitec.validate import check_static, parse_inputs
from iac_runner.job.settings import load_stack_file
from tests.helpers import STACKS

kubernetes_validate: Any = importlib.import_module("kubernetes_validate")


def request(backend: str = "opentofu", **changes: Any) -> RenderRequest:
    given: dict[str, Any] = {
        "backend": backend,
        "source_url": "https://git.example.com/platform/stacks.git",
        "ref": "main",
        "path": f"stacks/s3-bucket/{backend}/",
        "resource_type": "s3",
        "id": f"s3-{backend}",
        "image": "ghcr.io/acme/iac-driver-runner:1.2.3",
        **changes,
    }
    return RenderRequest(**given)


def container(text: str) -> tuple[Definition, ContainerInputs]:
    data = yaml.safe_load(text)
    definition = Definition.model_validate(data)
    return definition, ContainerInputs.model_validate(definition.entity.driver_inputs)


def checked(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "definition.yaml"
    path.write_text(text)
    documents, problems = load_file(path)
    return [p.render() for p in problems] + [p.render() for d in documents for p in check_static(d).problems]


# -- the templates as they are -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["opentofu", "pulumi", "cloudformation"])
def test_humanitec_templates_fit_the_model(backend: str, tmp_path: Path) -> None:
    text = (TEMPLATES / "humanitec" / f"{backend}.yaml").read_text()
    definition, inputs = container(text)
    assert definition.entity.driver_type == "humanitec/container"
    assert inputs.job is not None and inputs.job.command == ["iac-runner", "container"]
    variables = inputs.variables
    assert variables["IAC_RUNNER_BACKEND"] == backend
    assert variables["IAC_RUNNER_STACK_NAME"] == "${context.res.guresid}"
    assert ("IAC_RUNNER_STATE_URL" in variables) == (backend != "cloudformation")
    assert inputs.values.credentials_config is not None
    assert set(inputs.values.credentials_config.environment) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert inputs.secret_refs.source is not None and inputs.secret_refs.source.password is not None
    assert ("PULUMI_CONFIG_PASSPHRASE" in inputs.secret_refs.job.variables) == (backend == "pulumi")
    assert checked(tmp_path, text) == []


def test_job_template_fits_the_kubernetes_schema() -> None:
    documents = list(yaml.safe_load_all((TEMPLATES / "kubernetes" / "job.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Secret", "Job"]
    for document in documents:
        kubernetes_validate.validate(document, "1.29", strict=True)


# -- render ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["opentofu", "pulumi", "cloudformation"])
def test_rendered_definition_fits_the_model(backend: str) -> None:
    inputs = json.loads((STACKS / "s3-bucket" / "inputs.json").read_text())
    text = render(request(backend, inputs=inputs, secret_inputs=["apiToken"], state_url="s3://state-bucket/h"))
    assert text.startswith("# Rendered by `iac-runner definition render`")
    definition, driver_inputs = container(text)
    assert definition.metadata.id == f"s3-{backend}" and definition.entity.type == "s3"
    job = driver_inputs.job
    assert isinstance(job, Job) and job.image == "ghcr.io/acme/iac-driver-runner:1.2.3"
    assert job.variables["IAC_RUNNER_SOURCE_PATH"] == f"stacks/s3-bucket/{backend}"
    assert job.variables["IAC_RUNNER_STATE_URL"] == "s3://state-bucket/h"
    assert driver_inputs.values.source is not None
    assert driver_inputs.values.source.url == "https://git.example.com/platform/stacks.git"
    assert driver_inputs.values.source.ref == "refs/heads/main", "the driver takes a full ref name"
    assert json.loads(driver_inputs.values.files[job.variables["RESOURCE_INPUTS_FILE"]]) == inputs
    secret = driver_inputs.secret_refs.job.variables["IAC_RUNNER_SECRET_apiToken"]
    assert (secret.store, secret.ref) == ("platform-secrets", f"s3-{backend}/apiToken")


@pytest.mark.parametrize(
    ("url", "ref", "password", "ssh_key", "driver_ref"),
    [
        ("https://github.com/acme/stacks.git", "refs/tags/v1.0", True, False, "refs/tags/v1.0"),
        ("git@github.com:acme/stacks.git", "0123abc", False, True, "0123abc"),
        ("file:///srv/git/stacks.git", "release", False, False, "refs/heads/release"),
    ],
)
def test_render_chooses_git_auth_by_url_and_normalises_the_ref(
    url: str, ref: str, password: bool, ssh_key: bool, driver_ref: str
) -> None:
    _, inputs = container(render(request(source_url=url, ref=ref)))
    source = inputs.secret_refs.source
    assert (source is not None and source.password is not None) == password
    assert (source is not None and source.ssh_key is not None) == ssh_key
    assert inputs.values.source is not None and inputs.values.source.ref == driver_ref


@pytest.mark.parametrize("backend", ["opentofu", "pulumi", "cloudformation"])
def test_rendered_job_fits_the_kubernetes_schema(backend: str) -> None:
    text = render(
        request(backend, format="job", state_url="s3://state-bucket/k8s", secret_inputs=["apiToken"], id="S3.Bucket_1")
    )
    config_map, secret, job = yaml.safe_load_all(text)
    for document in (config_map, secret, job):
        kubernetes_validate.validate(document, "1.29", strict=True)
    assert job["metadata"]["name"].startswith("iac-runner-s3-bucket-1-") and job["metadata"]["name"].endswith("-create")
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    runner = pod["containers"][0]
    env = {item["name"]: item["value"] for item in runner["env"]}
    assert {
        "ACTION",
        "SCRIPTS_DIRECTORY",
        "RESOURCE_INPUTS_FILE",
        "OUTPUTS_FILE",
        "SECRET_OUTPUTS_FILE",
        "ERROR_FILE",
    } <= set(env)
    assert env["IAC_RUNNER_BACKEND"] == backend and env["IAC_RUNNER_STACK_NAME"] == "S3.Bucket_1"
    assert env["IAC_RUNNER_SOURCE_PATH"] == f"stacks/s3-bucket/{backend}"
    assert env["IAC_RUNNER_STATE_URL"] == "s3://state-bucket/k8s"
    assert runner["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["workspace"]
    assert volumes["inputs"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert json.loads(config_map["data"]["resource-inputs.json"]) == {}
    expected = {"IAC_RUNNER_SOURCE_TOKEN", "IAC_RUNNER_SECRET_apiToken"} | (
        {"PULUMI_CONFIG_PASSPHRASE"} if backend == "pulumi" else set()
    )
    assert set(secret["stringData"]) == expected


def test_the_kubernetes_check_is_strict() -> None:
    job = list(yaml.safe_load_all((TEMPLATES / "kubernetes" / "job.yaml").read_text()))[2]
    job["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    with pytest.raises(ConfigError) as caught:
        check_manifest(job)
    assert "does not pass its checks" in caught.value.summary and "imagePolicy" in caught.value.details


def test_render_refuses_what_it_cannot_make() -> None:
    with pytest.raises(ConfigError, match="no template for the backend 'ansible'"):
        render(request("ansible"))
    with pytest.raises(ConfigError, match="--state-url is required"):
        render(request("pulumi", format="job"))
    with pytest.raises(ConfigError, match="does not pass its checks"):
        render(request(state_url="http://not-a-state-url"))


# -- static checks, lines, placeholders -------------------------------------------------------------------


def test_problems_carry_the_line_and_a_suggestion(tmp_path: Path) -> None:
    text = (TEMPLATES / "humanitec" / "opentofu.yaml").read_text()
    broken = text.replace("        variables:\n", "        varaibles:\n", 1).replace(
        "namespace: humanitec-runner", "namespace: 3"
    )
    problems = checked(tmp_path, broken)
    line = broken.splitlines().index("        varaibles:") + 1
    assert any(
        f"definition.yaml:{line}: unknown driver input" in p and "did you mean 'variables'" in p for p in problems
    )
    namespace = next(i for i, x in enumerate(broken.splitlines(), 1) if "namespace: 3" in x)
    assert any(f":{namespace}: " in p and "job.namespace has the wrong type" in p for p in problems)


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    text = (TEMPLATES / "humanitec" / "opentofu.yaml").read_text()
    broken = text.replace("          ref: iac-runner/git-token", "          value: s3cr3t-value\n          ref: x")
    problems = checked(tmp_path, broken)
    assert problems and not [p for p in problems if "s3cr3t-value" in p]


def test_placeholders_resolve_and_escapes_stay_literal() -> None:
    text, missing = resolve(
        "a ${context.app.id} b ${resources.x.outputs.y} c $\\{ERROR_FILE}", {"context.app.id": "shop"}
    )
    assert text == "a shop b ${resources.x.outputs.y} c ${ERROR_FILE}"
    assert missing == ["resources.x.outputs.y"]


def test_the_emulated_resource_id_is_stable_and_follows_the_context() -> None:
    definition, _ = container((TEMPLATES / "humanitec" / "opentofu.yaml").read_text())
    first = context_values(definition, {})["context.res.guresid"]
    assert first == context_values(definition, {})["context.res.guresid"]
    assert first != context_values(definition, {"context.env.id": "production"})["context.res.guresid"]
    assert context_values(definition, {"context.res.guresid": "fixed"})["context.res.guresid"] == "fixed"


def test_inputs_files_may_hold_placeholders_where_values_go() -> None:
    data, error, _ = parse_inputs('{"name": "${context.app.id}", "principals": ${resources.x.outputs.list}}')
    assert error is None and data == {"name": "${context.app.id}", "principals": None}
    _, error, line = parse_inputs('{\n  "a": 1,\n  "b": yes\n}')
    assert error == "Expecting value" and line == 3


def test_the_three_s3_bucket_stacks_declare_the_same_inputs() -> None:
    for backend in ("opentofu", "pulumi", "cloudformation"):
        folder = STACKS / "s3-bucket" / backend
        declared, complete = backends.get(backend).declared_inputs(folder, load_stack_file(folder))
        assert complete, backend
        assert set(declared) == {"bucket", "environment", "versioning", "apiToken"}, backend
        assert declared["bucket"].required and not declared["environment"].required, backend
        assert declared["apiToken"].secret and not declared["bucket"].secret, backend


# -- the emulator's pieces -----------------------------------------------------------------------------------


def test_local_job_command_is_this_runner_and_paths_move_into_the_emulated_directory(tmp_path: Path) -> None:
    job = Job(image="i", shared_directory="/home/runner/workspace", command=["iac-runner", "container"])
    argv = emulate._local_argv(job, tmp_path)
    assert argv[1:] == ["-m", "iac_runner", "container"]
    script = Job(image="i", shared_directory="/work/", command=["/bin/sh", "/work/run.sh", "/workspace"])
    assert emulate._local_argv(script, tmp_path) == ["/bin/sh", f"{tmp_path}/run.sh", "/workspace"]


def test_docker_gets_variable_names_never_values(tmp_path: Path) -> None:
    job = Job(
        image="ghcr.io/acme/runner:1", shared_directory="/home/runner/workspace", command=["iac-runner", "container"]
    )
    argv = emulate._docker_argv(job, tmp_path, ["IAC_RUNNER_SECRET_apiToken"], None)
    assert argv[argv.index("--env") + 1] == "IAC_RUNNER_SECRET_apiToken"
    assert "--user" in argv and argv[argv.index("--user") + 1] == "1000:1000"
    assert argv[-4:] == ["--entrypoint", "iac-runner", "ghcr.io/acme/runner:1", "container"]


def test_default_endpoint_follows_the_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in emulate.AWS_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    assert emulate._endpoint(None) == "moto"
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert emulate._endpoint(None) == "aws"
    assert emulate._endpoint("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="--endpoint must be"):
        emulate._endpoint("localstack")
