"""The drift CronJob: templates/kubernetes/drift-cronjob.yaml as it is and as `iac-runner definition render --format
drift-cronjob` makes it, checked against the Kubernetes schema (kubernetes-validate, strict) like the Job."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import yaml

from iac_runner.common.errors import ConfigError
from iac_runner.humanitec.render import TEMPLATES, RenderRequest, render
from tests.helpers import base_env, run_cli

kubernetes_validate: Any = importlib.import_module("kubernetes_validate")


def request(backend: str = "opentofu", **changes: Any) -> RenderRequest:
    given: dict[str, Any] = {
        "backend": backend,
        "source_url": "https://git.example.com/platform/stacks.git",
        "ref": "main",
        "path": f"stacks/s3-bucket/{backend}",
        "resource_type": "s3",
        "id": f"s3-{backend}",
        "image": "ghcr.io/acme/iac-driver-runner:1.2.3",
        "format": "drift-cronjob",
        "state_url": "s3://state-bucket/k8s",
        **changes,
    }
    return RenderRequest(**given)


def validated(text: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(text) if d]
    for document in documents:
        kubernetes_validate.validate(document, "1.29", strict=True)
    return documents


def test_the_template_fits_the_kubernetes_schema() -> None:
    documents = validated((TEMPLATES / "kubernetes" / "drift-cronjob.yaml").read_text())
    assert [d["kind"] for d in documents] == ["ConfigMap", "Secret", "CronJob"]


@pytest.mark.parametrize("backend", ["opentofu", "pulumi", "cloudformation"])
def test_rendered_cronjob_runs_drift_detection_on_a_schedule_in_a_hardened_pod(backend: str) -> None:
    config_map, secret, cron_job = validated(render(request(backend, secret_inputs=["apiToken"])))
    spec = cron_job["spec"]
    assert spec["schedule"] == "@daily" and spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    runner = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in runner["env"]}
    assert env["ACTION"] == "drift" and env["IAC_RUNNER_REPORT_FILE"] == "/home/runner/out/report.json"
    assert env["IAC_RUNNER_BACKEND"] == backend and env["IAC_RUNNER_STACK_NAME"] == f"s3-{backend}"
    assert env["IAC_RUNNER_SOURCE_PATH"] == f"stacks/s3-bucket/{backend}"
    assert env["IAC_RUNNER_STATE_URL"] == "s3://state-bucket/k8s"
    assert runner["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in runner["volumeMounts"]}
    for path in ("/tmp", "/home/runner", "/home/runner/workspace", "/home/runner/out"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert volumes[mounts["/etc/iac-runner/inputs"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert runner["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    expected = {"IAC_RUNNER_SOURCE_TOKEN", "IAC_RUNNER_SECRET_apiToken"} | (
        {"PULUMI_CONFIG_PASSPHRASE"} if backend == "pulumi" else set()
    )
    assert set(secret["stringData"]) == expected
    instance = cron_job["metadata"]["labels"]["app.kubernetes.io/instance"]
    for labelled in (config_map, secret, cron_job, spec["jobTemplate"], job["template"]):
        assert labelled["metadata"]["labels"]["app.kubernetes.io/instance"] == instance


def test_a_long_id_still_leaves_room_for_the_jobs_names() -> None:
    (_, _, cron_job) = validated(render(request(id="a-very-long-resource-id-" * 4)))
    name = cron_job["metadata"]["name"]
    assert len(name) <= 52 and name.endswith("-drift"), name


def test_the_schedule_is_a_cron_schedule() -> None:
    (_, _, cron_job) = validated(render(request(schedule="30 5 * * 1-5")))
    assert cron_job["spec"]["schedule"] == "30 5 * * 1-5"
    with pytest.raises(ConfigError, match="is not a cron schedule"):
        render(request(schedule="every day"))
    with pytest.raises(ConfigError, match="--state-url is required"):
        render(request("pulumi", state_url=None))


def test_the_cli_renders_it() -> None:
    result = run_cli(
        ["definition", "render", "--format", "drift-cronjob", "--backend", "opentofu", "--source-url",
         "https://git.example.com/platform/stacks.git", "--path", "stacks/s3-bucket/opentofu", "--resource-type",
         "s3", "--id", "s3-orders", "--image", "ghcr.io/acme/iac-driver-runner:1.2.3", "--state-url",
         "s3://state-bucket/k8s", "--schedule", "0 6 * * *"],
        base_env(),
    )  # fmt: skip
    result.assert_ok()
    assert result.stdout.startswith("# Rendered by `iac-runner definition render --format drift-cronjob`")
    (_, _, cron_job) = validated(result.stdout)
    assert cron_job["metadata"]["name"] == "iac-runner-s3-orders-drift"
    assert cron_job["spec"]["schedule"] == "0 6 * * *"
