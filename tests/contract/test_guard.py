"""The replacement guard through the container contract, on each backend's `stacks/s3-bucket` against moto: a new
bucket name forces the bucket (and the token's parameter, named after it) to be replaced. A create that would do
it is refused before anything changes (exit 2, each resource named with the attribute that forces it); it goes
through when the resources are allowed (by address, or `all`); `protect:` in iac-runner.yaml wins over `all`;
destroy is unaffected; a plan says what a create would refuse; the run report records the guard's decision."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iac_runner import backends
from tests.helpers import (
    SENTINEL,
    STACKS,
    Container,
    Result,
    check_report,
    run_cli,
    s3_client,
    ssm_client,
    unique,
)
from tests.helpers.pulumi import PASSPHRASE
from tests.helpers.tofu import stack_files

ONE, TWO = "guard-one", "guard-two"
SECRETS = {"apiToken": SENTINEL}


@dataclass(frozen=True)
class Case:
    #: The resources a new bucket name replaces, each with the attribute that forces it, as the engine names them.
    replaced: dict[str, str]
    #: The bucket's own address: what the stack protects.
    bucket: str
    stack_file: str = ""
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    "cloudformation": Case(
        {"Bucket": "BucketName", "TokenParameter": "Name"}, "Bucket", "secret_outputs: [tokenParameter]\n"
    ),
    "opentofu": Case(
        {"aws_s3_bucket.this": "bucket", "aws_s3_bucket_versioning.this": "bucket", "aws_ssm_parameter.token": "name"},
        "aws_s3_bucket.this",
        env={"IAC_RUNNER_STATE_URL": "s3://guard-state/opentofu"},
    ),
    "pulumi": Case(
        {"bucket": "bucket", "token": "name"},
        "bucket",
        env={"IAC_RUNNER_STATE_URL": "s3://guard-state/pulumi", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
    ),
}
assert sorted(CASES) == sorted(backends.builtins()), "every built-in backend has its guard case"


def inputs(bucket: str) -> dict[str, Any]:
    return {"bucket": bucket, "environment": "development", "versioning": True}


def buckets(s3: Any) -> list[str]:
    return sorted(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] != "guard-state")


def parameters(ssm: Any) -> list[str]:
    return sorted(p["Name"] for p in ssm.describe_parameters()["Parameters"])


@pytest.mark.parametrize("backend", sorted(CASES))
def test_a_replacement_is_refused_unless_allowed_and_protect_wins(
    backend: str, container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    case = CASES[backend]
    s3, ssm = s3_client(aws), ssm_client(aws)
    s3.create_bucket(Bucket="guard-state")
    (tmp_path / "tmp").mkdir()
    container.env.update(
        {**aws, **case.env, "TMPDIR": str(tmp_path / "tmp"), "IAC_RUNNER_STACK_NAME": unique(f"guard-{backend}"),
         "IAC_RUNNER_BACKEND": backend}
    )  # fmt: skip
    files = stack_files(STACKS / "s3-bucket" / backend)
    plain = {**files, "iac-runner.yaml": case.stack_file}
    protected = {**files, "iac-runner.yaml": f"{case.stack_file}protect: [{case.bucket}]\n"}

    def run(action: str, bucket: str, allow: str | None = None, stack: dict[str, str] = plain) -> Result:
        return container.run(action, inputs(bucket), secrets=SECRETS, files=stack,
                             env={"IAC_RUNNER_ALLOW_REPLACE": allow})  # fmt: skip

    run("create", ONE).assert_ok()
    assert buckets(s3) == [ONE]
    before = parameters(ssm)

    refused = run("create", TWO)
    assert refused.returncode == 2, refused.log
    error = refused.error
    assert "the replacement guard refuses it: nothing was changed" in error
    for address, attribute in case.replaced.items():
        assert f"{address} (replace: {attribute} forces it)" in error, error
    allow = error.split("IAC_RUNNER_ALLOW_REPLACE=", 1)[1].split(" ", 1)[0]
    assert sorted(allow.split(",")) == sorted(case.replaced), error
    assert buckets(s3) == [ONE] and parameters(ssm) == before, "nothing was changed"
    decision = refused.report["guard"]
    assert decision["status"] == "refused"
    assert {r["address"]: r["forced_by"] for r in decision["refused"]} == {a: [f] for a, f in case.replaced.items()}
    assert refused.report["result"] == {"status": "failed", "exit_code": 2}

    # `iac-runner plan` (the local CLI) says what a create would refuse, and refuses nothing.
    folder = tmp_path / "stack"
    for name, text in plain.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    plan = ["plan", str(folder), "--var", f"bucket={TWO}", "--var", "versioning=true"]
    env = {**container.env, "IAC_RUNNER_REPORT_FILE": "", "IAC_RUNNER_SECRET_apiToken": SENTINEL}
    planned = run_cli([*plan, "--report", str(tmp_path / "p.json")], env)
    planned.assert_ok()
    for address, attribute in case.replaced.items():
        assert f"a create would refuse {address} (replace: {attribute} forces it) (not allowed)" in planned.log
    assert f"{len(case.replaced)} to add" in planned.stdout
    plan_report = json.loads((tmp_path / "p.json").read_text())
    check_report(plan_report)
    assert plan_report["guard"]["status"] == "refused"
    assert buckets(s3) == [ONE]

    allowed = run("create", TWO, allow=",".join(case.replaced))
    allowed.assert_ok()
    assert allowed.json("values")["bucket"] == TWO
    assert buckets(s3) == [TWO] and parameters(ssm) == [f"/iac-runner/{TWO}/api-token"], "both replaced"
    decision = allowed.report["guard"]
    assert decision["status"] == "passed" and decision["refused"] == []
    assert sorted(c["address"] for c in decision["let_through"]) == sorted(case.replaced)
    for address in case.replaced:
        assert f"replacement guard: {address} (replace" in allowed.log and "goes ahead, it is allowed" in allowed.log

    run("create", ONE, allow="all").assert_ok()
    assert buckets(s3) == [ONE] and parameters(ssm) == before

    kept = run("create", TWO, allow="all", stack=protected)
    assert kept.returncode == 2, kept.log
    assert f"{case.bucket} (replace: {case.replaced[case.bucket]} forces it) — protected" in kept.error
    assert "only a destroy removes a protected resource" in kept.error
    assert buckets(s3) == [ONE] and parameters(ssm) == before, "nothing was changed"
    decision = kept.report["guard"]
    assert decision["allowed"] == ["all"] and decision["protected"] == [case.bucket]
    assert [(r["address"], r["why"]) for r in decision["refused"]] == [(case.bucket, "protected")]

    destroyed = run("destroy", ONE, stack=protected)
    destroyed.assert_ok()
    assert buckets(s3) == [] and parameters(ssm) == []


def test_allow_replace_in_the_stack_file_and_the_flag_and_a_removal(
    container: Container, aws: dict[str, str], tmp_path: Path
) -> None:
    """cloudformation (quick): `allow_replace:` in iac-runner.yaml, `--allow-replace` of the local CLI, and a
    resource dropped from the template, which the guard refuses as a removal."""
    s3 = s3_client(aws)
    name = unique("guard-more")
    container.env.update({**aws, "IAC_RUNNER_STACK_NAME": name})
    template = (STACKS / "s3-bucket" / "cloudformation" / "template.yaml").read_text()
    files = {"template.yaml": template, "iac-runner.yaml": "secret_outputs: [tokenParameter]\n"}
    container.run("create", inputs(ONE), secrets=SECRETS, files=files).assert_ok()

    allowing = {**files, "iac-runner.yaml": "secret_outputs: [tokenParameter]\nallow_replace: [Bucket, Token*]\n"}
    container.run("create", inputs(TWO), secrets=SECRETS, files=allowing).assert_ok()
    assert buckets(s3) == [TWO]

    folder = tmp_path / "stack"
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    cli = ["apply", str(folder), "--stack-name", name, "--var", f"bucket={ONE}", "--var", "versioning=true"]
    env = {**container.env, "IAC_RUNNER_SECRET_apiToken": SENTINEL}
    assert run_cli(cli, env).returncode == 2
    assert buckets(s3) == [TWO]
    run_cli([*cli, "--allow-replace", "Bucket,TokenParameter"], env).assert_ok()
    assert buckets(s3) == [ONE]

    without = template.split("  TokenParameter:")[0] + "Outputs:\n  bucket:\n    Value: !Ref Bucket\n"
    removed = container.run("create", inputs(ONE), secrets=SECRETS, files={"template.yaml": without})
    assert removed.returncode == 2, removed.log
    assert "Where: TokenParameter (remove)" in removed.error
    assert parameters(ssm_client(aws)) == [f"/iac-runner/{ONE}/api-token"], "nothing was changed"
