"""The CloudFormation no-op path through the container contract: an unchanged create reads what is deployed
(DescribeStacks, GetTemplate), writes the same outputs and creates no change set; whenever equality with what is
deployed does not prove "no change", the full path (cfn-lint, a change set) runs instead. API calls are counted by
a proxy in front of moto, as they would reach AWS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import SENTINEL, STACKS, Container, Result, cfn_client, s3_example, ssm_client
from tests.helpers.faultproxy import FaultProxy, serving

TOPIC = """\
Parameters:
  name:
    Type: String
  token:
    Type: String
    NoEcho: true
    Default: none
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Ref name
Outputs:
  topic:
    Value: !GetAtt Topic.TopicName
  arn:
    Value: !Ref Topic
"""


@pytest.fixture
def proxy(container: Container, aws: dict[str, str]) -> Iterator[FaultProxy]:
    with serving(aws["AWS_ENDPOINT_URL"]) as counting:
        container.env.update({**aws, "AWS_ENDPOINT_URL": counting.url})
        yield counting


def twice(container: Container, proxy: FaultProxy, template: str, inputs: dict[str, Any]) -> tuple[Result, Result]:
    """A first create, then the same create again with the proxy's count reset in between."""
    files = {"template.yaml": template}
    first = container.run("create", inputs, secrets={"token": SENTINEL}, files=files)
    first.assert_ok()
    proxy.requests.clear()
    second = container.run("create", inputs, secrets={"token": SENTINEL}, files=files)
    second.assert_ok()
    return first, second


def test_an_unchanged_create_reads_what_is_deployed_and_makes_no_change_set(
    container: Container, proxy: FaultProxy
) -> None:
    container.env["IAC_RUNNER_STACK_NAME"] = "unchanged"
    first, second = twice(container, proxy, TOPIC, {"name": "orders"})
    assert second.json("values") == first.json("values") and second.json("secrets") == first.json("secrets")
    assert proxy.count("CreateChangeSet") == 0 and proxy.count("ExecuteChangeSet") == 0
    assert proxy.count("GetTemplate") == 1
    assert "is up to date: no changes" in second.log
    assert "cfn-lint" not in second.log


def test_the_example_stack_with_a_secret_parameter_takes_the_fast_path(container: Container, proxy: FaultProxy) -> None:
    """A NoEcho parameter is fingerprinted through a salted slow hash, never kept in clear: still provable."""
    container.env["IAC_RUNNER_STACK_NAME"] = "example"
    template = (STACKS / "s3-bucket" / "cloudformation" / "template.yaml").read_text()
    files = {"template.yaml": template, "iac-runner.yaml": "secret_outputs: [tokenParameter]\n"}
    for _ in range(2):
        proxy.requests.clear()
        result = container.run("create", s3_example.INPUTS, secrets={"apiToken": SENTINEL}, files=files)
        result.assert_ok()
    assert proxy.count("CreateChangeSet") == 0, "the second create is a no-op"
    deployed = cfn_client({"AWS_ENDPOINT_URL": proxy.target}).get_template(StackName="example")
    assert SENTINEL not in str(deployed["TemplateBody"])


def test_a_changed_secret_input_is_a_change(container: Container, proxy: FaultProxy) -> None:
    container.env["IAC_RUNNER_STACK_NAME"] = "secret-changed"
    files = {"template.yaml": TOPIC}
    container.run("create", {"name": "n"}, secrets={"token": SENTINEL}, files=files).assert_ok()
    proxy.requests.clear()
    container.run("create", {"name": "n"}, secrets={"token": SENTINEL + "2"}, files=files).assert_ok()
    assert proxy.count("CreateChangeSet") == 1


def test_a_changed_parameter_takes_the_full_path(container: Container, proxy: FaultProxy) -> None:
    container.env["IAC_RUNNER_STACK_NAME"] = "param-changed"
    files = {"template.yaml": TOPIC}
    container.run("create", {"name": "before"}, secrets={"token": SENTINEL}, files=files).assert_ok()
    proxy.requests.clear()
    # A new TopicName is a new topic (createOnlyProperties): the replacement guard must let it through.
    allowed = {"IAC_RUNNER_ALLOW_REPLACE": "Topic"}
    after = container.run("create", {"name": "after"}, secrets={"token": SENTINEL}, files=files, env=allowed)
    after.assert_ok()
    assert proxy.count("CreateChangeSet") == 1
    assert after.json("values")["topic"] == "after"


def test_a_stack_tag_changed_behind_the_runner_takes_the_full_path(
    container: Container, proxy: FaultProxy, aws: dict[str, str]
) -> None:
    container.env["IAC_RUNNER_STACK_NAME"] = "tag-changed"
    files = {"template.yaml": TOPIC}
    container.run("create", {"name": "tagged"}, secrets={"token": SENTINEL}, files=files).assert_ok()
    cfn = cfn_client(aws)
    # The deployed template itself (fingerprint included), touched only so that moto sees an update at all.
    deployed = cfn.get_template(StackName="tag-changed")["TemplateBody"]
    keep = [{"ParameterKey": "name", "UsePreviousValue": True}, {"ParameterKey": "token", "UsePreviousValue": True}]
    cfn.update_stack(StackName="tag-changed", TemplateBody=f"{deployed}\n# touched\n", Parameters=keep,
                     Tags=[{"Key": "team", "Value": "b"}])  # fmt: skip
    proxy.requests.clear()
    container.run("create", {"name": "tagged"}, secrets={"token": SENTINEL}, files=files).assert_ok()
    assert proxy.count("CreateChangeSet") == 1, "tags differ from those the fingerprint was made with"


def test_a_template_changed_behind_the_runner_takes_the_full_path(
    container: Container, proxy: FaultProxy, aws: dict[str, str]
) -> None:
    """Someone updated the stack with another template (no fingerprint, or another one): the runner's create
    brings its own template back."""
    container.env["IAC_RUNNER_STACK_NAME"] = "template-changed"
    files = {"template.yaml": TOPIC}
    container.run("create", {"name": "mine"}, secrets={"token": SENTINEL}, files=files).assert_ok()
    other = TOPIC.replace("  arn:\n    Value: !Ref Topic\n", "")
    cfn_client(aws).update_stack(
        StackName="template-changed",
        TemplateBody=other,
        Parameters=[
            {"ParameterKey": "name", "ParameterValue": "mine"},
            {"ParameterKey": "token", "UsePreviousValue": True},
        ],
    )
    proxy.requests.clear()
    result = container.run("create", {"name": "mine"}, secrets={"token": SENTINEL}, files=files)
    result.assert_ok()
    assert proxy.count("CreateChangeSet") == 1
    assert "arn" in result.json("values")


SSM_TYPED = TOPIC.replace(
    "  name:\n    Type: String\n", "  name:\n    Type: AWS::SSM::Parameter::Value<String>\n    Default: /fast/name\n"
)
DYNAMIC = TOPIC.replace("TopicName: !Ref name", "TopicName: !Ref name\n      DisplayName: '{{resolve:ssm:/fast/name}}'")
TRANSFORMED = "Transform: AWS::Serverless-2016-10-31\n" + TOPIC


@pytest.mark.parametrize(
    ("template", "inputs", "reason"),
    [
        (SSM_TYPED, {}, "parameters of SSM types"),
        (DYNAMIC, {"name": "unused"}, "dynamic references"),
        (TRANSFORMED, {"name": "sam"}, "a Transform"),
    ],
    ids=["SSM parameter type", "dynamic reference", "Transform"],
)
def test_what_equality_cannot_prove_takes_the_full_path(
    template: str, inputs: dict[str, Any], reason: str, *, container: Container, proxy: FaultProxy, aws: dict[str, str]
) -> None:
    """Values that can change outside the template (Parameter Store, a transform's output): an unchanged
    template proves nothing, so every create asks CloudFormation with a change set."""
    ssm_client(aws).put_parameter(Name="/fast/name", Value="from-ssm", Type="String", Overwrite=True)
    container.env["IAC_RUNNER_STACK_NAME"] = "unprovable"
    first, second = twice(container, proxy, template, inputs)
    assert proxy.count("CreateChangeSet") == 1, second.log
    assert proxy.count("GetTemplate") == 0, "no point reading what cannot prove anything"
    assert second.json("values") == first.json("values")
    assert f"a change set decides what changes, since it has {reason}" in second.log
