"""Stack outputs (`Output`, one type for every backend) split into the driver's values and secrets files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iac_runner.backends.base import Output
from iac_runner.common.errors import EngineError
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.secrets import MASK, REGISTRY

# The driver stores both files in Kubernetes objects, which cap at 1 MiB.
SIZE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class OutputFiles:
    values: Path
    secrets: Path


def classify(outputs: Iterable[Output], secret_inputs: Mapping[str, Any]) -> list[Output]:
    """Mark as secret any output that holds a secret (equal to a secret input, or containing any value the
    registry knows: secret inputs, sensitive outputs, tokens), so no secret reaches the values file."""
    outputs = list(outputs)
    for out in outputs:
        if out.secret:
            REGISTRY.add(out.value)
    secret_values = [json.dumps(v, sort_keys=True) for v in secret_inputs.values()]
    result = []
    for out in outputs:
        text = json.dumps(out.value, sort_keys=True)
        secret = out.secret
        if not secret and (text in secret_values or REGISTRY.redact(text) != text):
            log.warning(
                f"output {out.name!r} holds a secret value, so it goes to the secrets file; "
                "mark it sensitive/secret in the stack to silence this warning"
            )
            secret = True
            REGISTRY.add(out.value)
        result.append(Output(out.name, out.value, secret))
    return result


def split(outputs: Iterable[Output]) -> tuple[dict[str, Any], dict[str, Any]]:
    values: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for out in outputs:
        (secrets if out.secret else values)[out.name] = out.value
    return values, secrets


def render(outputs: Iterable[Output]) -> tuple[str, str]:
    """The two files' text, refusing more than the driver can store."""
    outputs = list(outputs)
    values, secrets = split(outputs)
    values_text = json.dumps(values, indent=2, sort_keys=True) + "\n"
    secrets_text = json.dumps(secrets, indent=2, sort_keys=True) + "\n"
    total = len(values_text.encode()) + len(secrets_text.encode())
    if total > SIZE_LIMIT:
        sizes = sorted(((len(json.dumps(o.value)), o.name) for o in outputs), reverse=True)[:5]
        largest = ", ".join(f"{name} ({size:,} bytes)" for size, name in sizes)
        raise EngineError(
            f"The stack's outputs are {total:,} bytes, over the driver's limit of {SIZE_LIMIT:,} bytes "
            "(1 MiB for both files together).",
            where=f"largest outputs: {largest}",
            fix="Output references (names, ARNs, URLs) instead of large documents, or store the data "
            "elsewhere and output where it is.",
        )
    return values_text, secrets_text


def write(outputs: Iterable[Output], files: OutputFiles) -> None:
    """Write both files atomically; the secrets file is readable by its owner only."""
    values_text, secrets_text = render(outputs)
    write_atomic(files.secrets, secrets_text, mode=0o600)
    write_atomic(files.values, values_text, mode=0o644)


def masked(outputs: Iterable[Output]) -> dict[str, Any]:
    """All outputs in one map for display, with secret values shown as the mask."""
    return {o.name: MASK if o.secret else o.value for o in outputs}
