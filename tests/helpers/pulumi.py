"""Pulumi programs the tests share (offline dynamic providers), the passphrase, and a file:// state's layout."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import Container, isolate

PASSPHRASE = "contract-passphrase-0123"
RP_INPUTS = {"name": "orders-db", "length": 32, "labels": {"team": "payments"}}

# An offline program (a dynamic provider that keeps its inputs, like terraform_data): a required string, a
# number with a range check, a map, a required secret; outputs of each JSON type, a secret one, and a map that
# holds a secret (which makes the whole output secret).
SMALL_PY = """\
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult


class RecordProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(id_=props["name"], outs=dict(props))

    def diff(self, _id, olds, news):
        changed = [k for k in ("name", "size", "tags") if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k == "name"]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, _id, _olds, news):
        return UpdateResult(outs=dict(news))


class Record(Resource):
    name: pulumi.Output[str]
    size: pulumi.Output[int]
    tags: pulumi.Output[dict]

    def __init__(self, resource_name, props):
        super().__init__(RecordProvider(), resource_name, props)


config = pulumi.Config()
name = config.require("name")
size = config.get_int("size") or 1
tags = config.get_object("tags") or {}
token = config.require_secret("token")
if not 1 <= size <= 100:
    raise ValueError("size must be between 1 and 100.")

record = Record("this", {"name": name, "size": size, "tags": tags})

pulumi.export("name", record.name)
pulumi.export("size", record.size)
pulumi.export("tags", record.tags)
pulumi.export("token", token)
pulumi.export("connection", {"host": record.name.apply(lambda n: n + ".db.internal"), "port": 5432, "password": token})
"""

# A resource that takes `seconds` to create: something to interrupt and to time out.
SLOW_PY = """\
import time

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class SlowProvider(ResourceProvider):
    def create(self, props):
        time.sleep(float(props["seconds"]))
        return CreateResult(id_="slow", outs=dict(props))


class Slow(Resource):
    seconds: pulumi.Output[float]

    def __init__(self, name, seconds):
        super().__init__(SlowProvider(), name, {"seconds": seconds})


config = pulumi.Config()
slow = Slow("slow", config.get_float("seconds") or 0)
pulumi.export("seconds", slow.seconds)
"""


def program(source: str, project: str = "small", runtime: str = "python") -> dict[str, str]:
    """A Pulumi project's files, for the driver's `files` input."""
    return {"Pulumi.yaml": f"name: {project}\nruntime: {runtime}\n", "__main__.py": source}


def isolate_pulumi(container: Container, tmp_path: Path, **extra: str) -> Path:
    """`isolate` (private temp dir, file:// state under tmp_path) plus the stack's passphrase; returns the state."""
    return isolate(container, tmp_path, PULUMI_CONFIG_PASSPHRASE=PASSPHRASE, **extra)


def checkpoint(state: Path, project: str, stack: str) -> dict[str, Any]:
    """The stack's latest deployment in a file:// state (pulumi's DIY backend, project-scoped layout)."""
    data = json.loads((state / ".pulumi" / "stacks" / project / f"{stack}.json").read_text())
    # `pulumi stack import` writes the checkpoint's keys capitalised (Go field names); pulumi reads both.
    latest: dict[str, Any] = data["checkpoint"].get("latest") or data["checkpoint"].get("Latest") or {}
    return latest


def managed(deployment: dict[str, Any]) -> list[str]:
    """The deployment's resources other than the stack and its providers, as `type.name`."""
    return sorted(
        f"{r['type']}.{r['urn'].rsplit('::', 1)[-1]}"
        for r in deployment.get("resources", [])
        if not r["type"].startswith(("pulumi:pulumi:", "pulumi:providers:"))
    )


def lock_files(state: Path, project: str, stack: str) -> list[Path]:
    folder = state / ".pulumi" / "locks" / "organization" / project / stack
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def write_lock(state: Path, project: str, stack: str) -> Path:
    """A lock left by a dead run, written as pulumi 3.79's DIY backend writes one (`lockContent` in
    pkg/backend/filestate/lock.go, at `.pulumi/locks/<org>/<project>/<stack>/<uuid>.json`)."""
    path = state / ".pulumi" / "locks" / "organization" / project / stack / f"{uuid.uuid4()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"pid": 999999, "username": "ghost", "hostname": "dead-runner", "timestamp": "2024-01-02T03:04:05Z"}
    path.write_text(json.dumps(content))
    return path
