"""Deterministic stack names: each engine has its own rules, the same resource id always maps to one name."""

from __future__ import annotations

import re


def sanitize(name: str, *, allowed: str, max_length: int, first: str = "a-zA-Z") -> str:
    """Fit `name` to an engine's naming rules.

    `allowed` and `first` are regex character-class bodies. Characters outside `allowed` become '-'; a name
    that had to change gets a short hash of the original, so two ids that differ only in forbidden
    characters (`my.app` and `my_app`) never share a stack.
    """
    cleaned = re.sub(rf"[^{allowed}]+", "-", name).strip("-")
    if not cleaned or not re.match(rf"[{first}]", cleaned):
        cleaned = f"s-{cleaned}".rstrip("-")
    if cleaned == name and len(name) <= max_length:
        return name
    import hashlib  # only for a name that changes: most runs need no OpenSSL (~3 ms to load)

    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned[: max_length - len(digest) - 1].rstrip('-')}-{digest}"
