"""The cyclic garbage collector and what a run builds once to keep: modules, an SDK's client with its models.

Those objects live as long as the process, and the collector finds nothing among them; with the default thresholds
it still traverses them again and again while they are made (botocore's client alone sets off a full pass, ~30 ms)
and once more at exit (~35 ms). So they are made with collections off and frozen afterwards (`gc.freeze`): the
collections of a long run, for its garbage, scan only what the run makes later. A process runs one job: what is
frozen and dropped afterwards (the client, once the stack is done) is given back when the process ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def lasting() -> Iterator[None]:
    """Objects made inside live as long as the process: no collection while they are made, and none of what exists
    at the end scanned again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
