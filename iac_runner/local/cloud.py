"""The embedded default cloud: moto's standalone server on a free loopback port.

Used by `iac-runner demo` and the test suite. Run as `python -m iac_runner.local.cloud PORT`, it starts moto with
four fidelity fixes: moto's change-set execution leaves the stack's outputs and parameters as they were before
the change set, where real CloudFormation updates them; its CloudFormation S3 bucket ignores
VersioningConfiguration; its update change sets list no change a parameter makes and never say whether a
change replaces the resource; and it misses the parameters a resource names in `Fn::Sub`. The fixes make moto
behave like AWS; the runner's own API calls are the same against both.
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


def _fix_change_set_changes() -> None:
    """An update change set as AWS describes it: a resource whose properties reference a changed parameter is
    modified too (moto's execution already updates it), and each modification says which properties change, and
    whether that replaces the resource (Replacement, Scope, Details): properties that only a new resource can
    take are the resource schema's createOnlyProperties (cfn-lint ships the schemas)."""
    from moto.cloudformation.models import Change, ChangeSet
    from moto.cloudformation.parsing import get_references_from_template

    diff = ChangeSet.diff

    def diff_as_aws(self: ChangeSet) -> list[Change]:
        if self.change_set_type != "UPDATE":
            return diff(self)
        resources = self.stack.resource_map
        old = resources._resource_json_map
        new = self.template_dict.get("Resources") or {}
        moved = {name for name, value in self.parameters.items() if resources.input_parameters.get(name) != value}
        changes = []
        # What moto's execution of the change set does (ResourceMap.update), with the parameters.
        for action, names in resources.build_resource_diff(self.template_dict, self.parameters).items():
            for name in names:
                change = Change(action, name, (new.get(name) or old[name])["Type"])
                if action == "Modify":
                    details = _details(old[name], new[name], moved, get_references_from_template)
                    replaced = any(d["Target"]["RequiresRecreation"] == "Always" for d in details)
                    change.replacement = "True" if replaced else "False"  # type: ignore[attr-defined]
                    change.scope = sorted({d["Target"]["Attribute"] for d in details})  # type: ignore[attr-defined]
                    change.details = details  # type: ignore[attr-defined]
                changes.append(change)
        return changes

    ChangeSet.diff = diff_as_aws  # type: ignore[method-assign]


def _details(old: dict[str, Any], new: dict[str, Any], moved: set[str], references: Any) -> list[dict[str, Any]]:
    """The Details of a modified resource's change: each property that changes, directly or through a parameter."""
    from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, new["Type"]).schema
    create_only = {path.removeprefix("/properties/") for path in schema.get("createOnlyProperties", [])}
    before, after = old.get("Properties") or {}, new.get("Properties") or {}
    details = []
    for name in sorted({*before, *after}):
        recreation = "Always" if name in create_only else "Never"
        target = {"Attribute": "Tags"} if name == "Tags" else {"Attribute": "Properties", "Name": name}
        target["RequiresRecreation"] = recreation
        if before.get(name) != after.get(name):
            details.append({"Target": target, "Evaluation": "Static", "ChangeSource": "DirectModification"})
        for parameter in sorted(moved & set(references(after.get(name)))):
            details.append(
                {"Target": target, "Evaluation": "Static", "ChangeSource": "ParameterReference",
                 "CausingEntity": parameter}
            )  # fmt: skip
    return details


def _fix_sub_references() -> None:
    """moto finds a resource's references to parameters in `Ref` only: one that names a parameter in `Fn::Sub`
    (`!Sub "/app/${bucket}/token"`) was neither in a change set nor updated when only that parameter changed.
    AWS resolves both; so do the change sets and their execution here."""
    from moto.cloudformation import parsing

    def references(template: Any) -> list[str]:
        if isinstance(template, list):
            return [name for item in template for name in references(item)]
        if not isinstance(template, dict):
            return []
        found: list[str] = []
        for key, value in template.items():
            if key == "Ref":
                found.append(value)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) and value else value
                found += re.findall(r"\$\{([^}!.]+)\}", text) if isinstance(text, str) else []
                found += references(value[1:] if isinstance(value, list) else [])
            else:
                found += references(value)
        return found

    parsing.get_references_from_template = references


def serve(port: int) -> None:
    from moto.server import main

    _fix_change_set_execution()
    _fix_bucket_versioning()
    _fix_sub_references()  # first: the change sets' fix takes moto's reference finder as it is then
    _fix_change_set_changes()
    main(["-H", HOST, "-p", str(port)])


if __name__ == "__main__":
    serve(int(sys.argv[1]))
