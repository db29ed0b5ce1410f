"""The secret registry: every value registered here is masked in everything the runner prints or writes
outside the secrets file.

Secrets arrive from many places (secret inputs, sensitive outputs, git tokens, SSH keys); whoever learns a
secret registers it at once, and every log line and error message passes through `redact`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Shorter values would mask unrelated text everywhere ("true", "pass" in "password"); they are still kept
# out of the values file by the output split, just not searched for in free text.
MIN_LENGTH = 6


class SecretRegistry:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        """Register a secret value; structured values register each string leaf and their JSON form."""
        forms: set[str] = set()
        for leaf in _leaves(value):
            forms.update(_text_forms(leaf))
        if not isinstance(value, str):
            forms.add(json.dumps(value))
            forms.add(json.dumps(value, separators=(",", ":")))
        with self._lock:
            self._values.update(f for f in forms if len(f) >= MIN_LENGTH)

    def add_all(self, values: Iterable[Any]) -> None:
        for value in values:
            self.add(value)

    def redact(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            # Longest first so a secret that contains another is masked whole.
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and value in self._values

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def _text_forms(leaf: Any) -> set[str]:
    """The ways a secret string shows up in engine output: as is, JSON-escaped, base64 (HTTP basic auth)."""
    text = leaf if isinstance(leaf, str) else json.dumps(leaf)
    forms = {text, json.dumps(text)[1:-1]}
    forms.update(line for line in text.splitlines() if line.strip())
    forms.add(base64.b64encode(text.encode()).decode())
    return forms


REGISTRY = SecretRegistry()
