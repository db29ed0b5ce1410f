"""The `pulumi_aws` example programs (stacks/s3-bucket/pulumi-aws, stacks/redis/pulumi), run in-process under
`pulumi.runtime.set_mocks`: inputs → resources and their properties → outputs (names, JSON types, secret flags).

These programs need Pulumi's aws provider plugin to run for real, which cannot be had on machines that reach only
PyPI and the Go module proxy (it is downloaded from get.pulumi.com, or built from a very heavy Go module); the
mocks stand in for the plugin here. Their READMEs say so.
"""

from __future__ import annotations

import contextvars
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

from tests.helpers import SENTINEL, STACKS

try:
    import pulumi_aws  # noqa: F401 - the programs import it; fail here, with the fix, when it is missing
except ImportError:
    pytest.fail(
        "pulumi_aws is not installed: pip install 'pulumi-aws==6.55.0' (the newest release that accepts the pinned "
        "pulumi 3.79.0 SDK; part of the dev extra)",
        pytrace=False,
    )

# pulumi_aws warns about deprecated resources it defines as it is imported: none of them is used here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

S3_AWS = STACKS / "s3-bucket" / "pulumi-aws"
REDIS = STACKS / "redis" / "pulumi"
S3_INPUTS = json.loads((STACKS / "s3-bucket" / "inputs.json").read_text())
REDIS_INPUTS = json.loads((STACKS / "redis" / "inputs.example.json").read_text())
REDIS_TOKEN = "a-redis-auth-token-" + SENTINEL


@dataclass
class Created:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Recorder(Mocks):
    """Mocks that record every resource and answer as the aws provider would, for the outputs the programs read."""

    region: str = "eu-central-1"
    created: list[Created] = field(default_factory=list)

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.created.append(Created(args.typ, args.name, inputs))
        outputs = dict(inputs)
        if args.typ == "aws:s3/bucketV2:BucketV2":
            resource_id = inputs["bucket"]
            outputs.update(arn=f"arn:aws:s3:::{resource_id}", region=self.region)
        elif args.typ == "aws:ssm/parameter:Parameter":
            resource_id = inputs["name"]
        elif args.typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            resource_id = inputs["replicationGroupId"]
            outputs.update(
                primaryEndpointAddress=f"master.{resource_id}.abc123.euc1.cache.amazonaws.com",
                readerEndpointAddress=f"replica.{resource_id}.abc123.euc1.cache.amazonaws.com",
            )
        elif args.typ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = "sg-0123456789abcdef0"
        else:
            resource_id = f"{args.name}-id"
        return resource_id, outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []

    def one(self, type_: str) -> Created:
        found = [c for c in self.created if c.type == type_]
        assert len(found) == 1, f"{len(found)} resources of type {type_}: {[c.type for c in self.created]}"
        return found[0]


def secret(value: Any) -> Any:
    """The value a resource received as a secret input (the mocks see the wire form: a signed wrapper)."""
    from pulumi.runtime import rpc

    assert isinstance(value, dict), f"not a secret: {value!r}"
    assert value.get(rpc._special_sig_key) == rpc._special_secret_sig, f"not a secret: {value!r}"
    return value["value"]


@dataclass(frozen=True)
class Exported:
    value: Any
    secret: bool


def run_program(
    folder: Path, inputs: dict[str, Any], secrets: dict[str, str], mocks: Recorder | None = None
) -> tuple[Recorder, dict[str, Exported]]:
    """The program of `folder` with the runner's config mapping (`<project>:<key>`, objects as JSON, secrets as
    secret config), in a fresh context so no state leaks between tests; returns the mocks and the exports."""
    import yaml
    from pulumi.runtime import set_all_config, set_mocks
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    project = yaml.safe_load((folder / "Pulumi.yaml").read_text())["name"]
    recorder = mocks or Recorder()

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    def body() -> dict[str, Exported]:
        set_mocks(recorder, project=project, stack="unit", preview=False)
        config = {f"{project}:{k}": text(v) for k, v in {**inputs, **secrets}.items()}
        set_all_config(config, [f"{project}:{k}" for k in secrets])
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(folder / "__main__.py"), run_name="__main__")))
        root = get_root_resource()
        assert root is not None
        exported = {}
        for name, value in root.outputs.items():  # type: ignore[attr-defined]
            output = pulumi.Output.from_input(value)
            exported[name] = Exported(_sync_await(output.future()), _sync_await(output.is_secret()))
        return exported

    return recorder, contextvars.Context().run(body)


# -- s3-bucket/pulumi-aws ----------------------------------------------------------------------------------------


def test_s3_bucket_aws_resources_and_outputs() -> None:
    mocks, exported = run_program(S3_AWS, S3_INPUTS, {"apiToken": SENTINEL})
    bucket = S3_INPUTS["bucket"]

    created = mocks.one("aws:s3/bucketV2:BucketV2")
    assert created.inputs["bucket"] == bucket
    assert created.inputs["tags"] == {"environment": "development", "managed-by": "iac-runner"}
    versioning = mocks.one("aws:s3/bucketVersioningV2:BucketVersioningV2")
    assert versioning.inputs["bucket"] == bucket
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    parameter = mocks.one("aws:ssm/parameter:Parameter")
    assert parameter.inputs["name"] == f"/iac-runner/{bucket}/api-token"
    assert parameter.inputs["type"] == "SecureString"
    assert secret(parameter.inputs["value"]) == SENTINEL, "the token reaches the parameter as a secret"

    # The same output names, value/secret split and JSON types as the cloudformation/opentofu/pulumi twins.
    assert {name: e.value for name, e in exported.items()} == {
        "bucket": bucket,
        "arn": f"arn:aws:s3:::{bucket}",
        "region": "eu-central-1",
        "tokenParameter": f"/iac-runner/{bucket}/api-token",
    }
    assert {name for name, e in exported.items() if e.secret} == {"tokenParameter"}
    assert all(isinstance(e.value, str) for e in exported.values())


def test_s3_bucket_aws_versioning_off_and_environment() -> None:
    inputs = {**S3_INPUTS, "versioning": False, "environment": "production"}
    mocks, _ = run_program(S3_AWS, inputs, {"apiToken": SENTINEL})
    assert mocks.one("aws:s3/bucketV2:BucketV2").inputs["tags"]["environment"] == "production"
    versioning = mocks.one("aws:s3/bucketVersioningV2:BucketVersioningV2")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Suspended"}


def test_s3_bucket_aws_rejects_a_bad_bucket_name() -> None:
    with pytest.raises(ValueError, match="bucket must be 3-63 characters"):
        run_program(S3_AWS, {**S3_INPUTS, "bucket": "Not_A_Bucket"}, {"apiToken": SENTINEL})


def test_s3_bucket_aws_requires_the_token() -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="apiToken"):
        run_program(S3_AWS, S3_INPUTS, {})


# -- redis/pulumi ---------------------------------------------------------------------------------------------------


def test_redis_resources_and_outputs() -> None:
    mocks, exported = run_program(REDIS, REDIS_INPUTS, {"authToken": REDIS_TOKEN})
    name = REDIS_INPUTS["name"]

    subnets = mocks.one("aws:elasticache/subnetGroup:SubnetGroup")
    assert subnets.inputs["name"] == name
    assert subnets.inputs["subnetIds"] == REDIS_INPUTS["subnetIds"]
    group = mocks.one("aws:ec2/securityGroup:SecurityGroup")
    assert group.inputs["vpcId"] == REDIS_INPUTS["vpcId"]
    assert group.inputs["namePrefix"] == f"{name}-redis-"
    rule = mocks.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rule.inputs["securityGroupId"] == "sg-0123456789abcdef0"
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["cidrIpv4"]) == (6379, 6379, "10.0.0.0/8")

    redis = mocks.one("aws:elasticache/replicationGroup:ReplicationGroup")
    expected = {
        "replicationGroupId": name,
        "engine": "redis",
        "engineVersion": "7.1",
        "nodeType": "cache.t4g.micro",
        "port": 6379,
        "numCacheClusters": 2,  # replicas (default 1) besides the primary, as in the OpenTofu twin
        "automaticFailoverEnabled": True,
        "multiAzEnabled": True,
        "transitEncryptionEnabled": True,
        "atRestEncryptionEnabled": True,
        "subnetGroupName": name,
        "securityGroupIds": ["sg-0123456789abcdef0"],
    }
    assert {k: redis.inputs.get(k) for k in expected} == expected
    assert secret(redis.inputs["authToken"]) == REDIS_TOKEN

    # The same output names and JSON types as the opentofu/cloudformation twins: `port` is a string.
    assert {name: e.value for name, e in exported.items()} == {
        "host": f"master.{name}.abc123.euc1.cache.amazonaws.com",
        "port": "6379",
        "readerHost": f"replica.{name}.abc123.euc1.cache.amazonaws.com",
    }
    assert not any(e.secret for e in exported.values()), "the token is a secret input, not an output"


def test_redis_without_replicas_has_no_failover() -> None:
    mocks, _ = run_program(REDIS, {**REDIS_INPUTS, "replicas": 0}, {"authToken": REDIS_TOKEN})
    redis = mocks.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert redis.inputs["numCacheClusters"] == 1
    assert redis.inputs["automaticFailoverEnabled"] is False
    assert redis.inputs["multiAzEnabled"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Orders_Cache"}, "name must start with a letter"),
        ({"replicas": 6}, "replicas must be a whole number from 0 to 5"),
        ({"subnetIds": []}, "subnetIds must name at least one subnet"),
        ({"allowedCidr": "not-a-cidr"}, "allowedCidr must be a CIDR block"),
    ],
)
def test_redis_rejects_bad_inputs(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_program(REDIS, {**REDIS_INPUTS, **change}, {"authToken": REDIS_TOKEN})


def test_redis_rejects_a_short_token() -> None:
    with pytest.raises(ValueError, match="authToken must be 16 to 128 characters long"):
        run_program(REDIS, REDIS_INPUTS, {"authToken": "short"})
