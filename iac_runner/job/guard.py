"""The replacement guard: a create that would replace or remove an existing resource is refused before anything
changes, unless the resource is allowed (IAC_RUNNER_ALLOW_REPLACE / --allow-replace / `allow_replace:` in
iac-runner.yaml, `all` for any). Resources under `protect:` are never replaced or removed by a create, even with
`all`: only a destroy, the explicit request, removes them. A data store must not vanish on an input change.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iac_runner.backends.base import ChangeSummary, ResourceChange
from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log

RISKY = ("replace", "remove")
ALL = "all"


def _matches(address: str, patterns: Iterable[str]) -> bool:
    return any(address == p or fnmatch.fnmatchcase(address, p) for p in patterns)


def _describe(change: ResourceChange) -> str:
    """`address (replace: name forces it)`; the engine's reason where it names no attribute (`cannot update`)."""
    if change.action == "replace" and change.attributes:
        return f"{change.address} (replace: {', '.join(change.attributes)} forces it)"
    if change.action == "replace" and change.reason:
        return f"{change.address} (replace: {change.reason})"
    return f"{change.address} ({change.action})"


@dataclass
class Guard:
    allowed: set[str] = field(default_factory=set)
    protected: set[str] = field(default_factory=set)
    #: What the guard decided, for the run report.
    decision: dict[str, Any] | None = None

    def decide(self, summary: ChangeSummary) -> list[tuple[ResourceChange, str]]:
        """The replacements and removals the guard refuses, each with why; records the decision."""
        refused: list[tuple[ResourceChange, str]] = []
        allowed: list[ResourceChange] = []
        for change in (c for c in summary.changes if c.action in RISKY):
            if change.unfinished and not _matches(change.address, self.protected):
                log.info(f"replacement guard: {change.address} never finished its create ({change.reason}): replaced")
            elif _matches(change.address, self.protected):
                refused.append((change, "protected"))
            elif ALL in self.allowed or _matches(change.address, self.allowed):
                allowed.append(change)
            else:
                refused.append((change, "not allowed"))
        self.decision = {
            "status": "refused" if refused else "passed",
            "allowed": sorted(self.allowed),
            "protected": sorted(self.protected),
            "refused": [
                {
                    "address": c.address,
                    "action": c.action,
                    "why": why,
                    **({"forced_by": list(c.attributes)} if c.attributes else {}),
                }
                for c, why in refused
            ],
            "let_through": [{"address": c.address, "action": c.action} for c in allowed],
        }
        for change in allowed:
            log.warning(f"replacement guard: {_describe(change)} goes ahead, it is allowed")
        return refused

    def __call__(self, summary: ChangeSummary) -> None:
        """The apply's check: raise before anything changes when the plan replaces or removes what it may not."""
        refused = self.decide(summary)
        if not refused:
            return
        names = "; ".join(f"{_describe(c)}{' — protected' if why == 'protected' else ''}" for c, why in refused)
        protected = [c.address for c, why in refused if why == "protected"]
        allow = ",".join(c.address for c, why in refused if why != "protected")
        raise ConfigError(
            f"The create would replace or remove {len(refused)} existing resource(s), and the replacement guard "
            "refuses it: nothing was changed.",
            where=names,
            fix=" ".join(
                part
                for part in (
                    f"If that is intended, allow it: IAC_RUNNER_ALLOW_REPLACE={allow} (or `all`), --allow-replace, or "
                    "`allow_replace:` in iac-runner.yaml; otherwise change the input back."
                    if allow
                    else "",
                    f"{', '.join(protected)} {'is' if len(protected) == 1 else 'are'} under `protect:` in "
                    "iac-runner.yaml: only a destroy removes a protected resource."
                    if protected
                    else "",
                )
                if part
            ),
            resource=refused[0][0].address,
        )

    def preview(self, summary: ChangeSummary) -> None:
        """For a plan: say what the guard would refuse, without refusing."""
        for change, why in self.decide(summary):
            log.warning(f"replacement guard: a create would refuse {_describe(change)} ({why})")
