"""The embedded default cloud: moto's standalone server on a free loopback port.

Used by `iac-runner demo` and the test suite. Run as `python -m iac_runner.local.cloud PORT`, it starts moto with
three fidelity fixes: moto's change-set execution leaves the stack's outputs and parameters as they were before the
change set, where real CloudFormation updates them; its CloudFormation S3 bucket ignores VersioningConfiguration;
and its change sets miss a resource that changes through a parameter only and never say whether a change replaces
the resource, where CloudFormation says both (what the replacement guard reads). The fixes make moto behave like
AWS; the runner's own API calls are the same against both.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from iac_runner.common.errors import ConfigError

HOST = "127.0.0.1"
REGION = "us-east-1"


@dataclass(frozen=True)
class Emulator:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The AWS environment that points every engine at the emulator with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(timeout: float = 30.0) -> Iterator[Emulator]:
    """Start moto on a free loopback port, wait until it answers, stop it afterwards."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise ConfigError(
            "moto's server is not installed, so the embedded AWS emulator cannot start.",
            fix="Install the demo extra: pip install 'iac-driver-runner[demo]' (make setup does).",
        ) from None
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "iac_runner.local.cloud", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_CALL_RESET_API": "true"},
    )
    emulator = Emulator(f"http://{HOST}:{port}")
    try:
        _wait_ready(emulator, child, timeout)
        yield emulator
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def _wait_ready(emulator: Emulator, child: subprocess.Popen[bytes], timeout: float) -> None:
    expires = time.monotonic() + timeout
    while time.monotonic() < expires:
        if child.poll() is not None:
            raise ConfigError(f"moto's server exited at start (code {child.returncode}).")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{emulator.endpoint}/moto-api/data.json", timeout=1),  # noqa: S310
        ):
            return
        time.sleep(0.1)
    raise ConfigError(f"moto's server did not answer on {emulator.endpoint} within {timeout:g} s.")


def _fix_change_set_execution() -> None:
    from moto.cloudformation.models import ChangeSet

    apply = ChangeSet.apply

    def apply_and_refresh(self: ChangeSet) -> None:
        apply(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.parameters = self.parameters
        stack.output_map = stack._create_output_map()

    ChangeSet.apply = apply_and_refresh  # type: ignore[method-assign]


def _fix_bucket_versioning() -> None:
    """moto's CloudFormation creates an AWS::S3::Bucket without its VersioningConfiguration; AWS applies it."""
    from moto.s3.models import FakeBucket, s3_backends
    from moto.utilities.utils import get_partition

    create = FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_versioned(cls: Any, /, name: str, template: Any, account: str, region: str, **kw: Any) -> Any:
        bucket = create(cls, name, template, account, region, **kw)
        status = (template.get("Properties", {}).get("VersioningConfiguration") or {}).get("Status")
        if status:
            s3_backends[account][get_partition(region)].put_bucket_versioning(bucket.name, status)
        return bucket

    setattr(FakeBucket, "create_from_cloudformation_json", classmethod(create_versioned))  # noqa: B010


#: Properties whose change replaces the resource ("Update requires: Replacement" in the AWS resource reference), for
#: the resource types of the example stacks; a change of any other property is made in place.
REPLACED_BY = {
    "AWS::S3::Bucket": {"BucketName"},
    "AWS::SSM::Parameter": {"Name"},
    "AWS::SNS::Topic": {"TopicName", "FifoTopic"},
    "AWS::SQS::Queue": {"QueueName", "FifoQueue"},
    "AWS::SNS::Subscription": {"Endpoint", "Protocol", "TopicArn"},
    "AWS::EC2::SecurityGroup": {"GroupName", "GroupDescription", "VpcId"},
    "AWS::ElastiCache::SubnetGroup": {"CacheSubnetGroupName"},
    "AWS::ElastiCache::ReplicationGroup": {"ReplicationGroupId", "Engine", "CacheSubnetGroupName", "Port"},
}


def _parameters_used(value: Any) -> set[str]:
    """The names a property's value refers to: `Ref`s and the `${name}`s of `Fn::Sub`."""
    if isinstance(value, list):
        return set().union(*(_parameters_used(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, inner in value.items():
        if key == "Ref" and isinstance(inner, str):
            found.add(inner)
        elif key == "Fn::Sub":
            text = inner[0] if isinstance(inner, list) and inner else inner
            found.update(re.findall(r"\$\{([^}!.]+)\}", text) if isinstance(text, str) else ())
            found.update(_parameters_used(inner[1:] if isinstance(inner, list) else []))
        else:
            found.update(_parameters_used(inner))
    return found


def _fix_change_set_details() -> None:
    """A Modify change as CloudFormation describes it: found when only a parameter it uses changed, with
    `Replacement` and a `Details` entry per changed property (`RequiresRecreation`, what caused it)."""
    from moto.cloudformation.models import Change, ChangeSet

    diff = ChangeSet.diff

    def diff_with_details(self: ChangeSet) -> list[Change]:
        resource_map = self.stack.resource_map
        deployed = resource_map._resource_json_map
        wanted = self.template_dict.get("Resources") or {}
        given = resource_map.input_parameters or {}
        changed = {k for k, v in (self.parameters or {}).items() if given.get(k) != v}
        changes = [c for c in diff(self) if c.action != "Modify"]
        for name, resource in wanted.items():
            if name not in deployed:
                continue
            old, new = deployed[name].get("Properties") or {}, resource.get("Properties") or {}
            details: list[dict[str, Any]] = []
            replaced = False
            for prop in sorted(set(old) | set(new)):
                by_parameter = sorted(_parameters_used(new.get(prop)) & changed)
                if old.get(prop) == new.get(prop) and not by_parameter:
                    continue
                recreates = prop in REPLACED_BY.get(resource.get("Type", ""), ())
                replaced = replaced or recreates
                details.append(
                    {
                        "Target": {"Attribute": "Properties", "Name": prop,
                                   "RequiresRecreation": "Always" if recreates else "Never"},
                        "Evaluation": "Static",
                        "ChangeSource": "ParameterReference" if by_parameter else "DirectModification",
                        **({"CausingEntity": by_parameter[0]} if by_parameter else {}),
                    }
                )  # fmt: skip
            if not details and deployed[name] == resource:
                continue
            change = Change("Modify", name, resource.get("Type", ""))
            # Members of the API's ResourceChange that moto's Change lacks; its serializer picks them up by name.
            vars(change).update(
                replacement="True" if replaced else "False", scope=["Properties"] if details else [], details=details
            )
            changes.append(change)
        return changes

    ChangeSet.diff = diff_with_details  # type: ignore[method-assign]


def serve(port: int) -> None:
    from moto.server import main

    _fix_change_set_execution()
    _fix_bucket_versioning()
    _fix_change_set_details()
    main(["-H", HOST, "-p", str(port)])


if __name__ == "__main__":
    serve(int(sys.argv[1]))
