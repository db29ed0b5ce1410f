"""The engines' watchdog, run as a script of its own by `process` (`python -I -S watchdog.py GRACE`).

It reads `+PGID` / `-PGID` lines on stdin: the process groups of the engines the runner starts and sees end. At
the end of its input (the runner exited or was killed: the kernel closes the pipe either way) it gives each
engine still running GRACE seconds to stop on the SIGINT its parent-death signal brought, then kills whatever is
left of those process groups (a provisioner's children, a plugin). Only the standard library: it starts in a few
milliseconds, with no site-packages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> None:
    # A Ctrl-C or SIGTERM meant for the runner must not stop the watchdog before it has done its job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    deadline = time.monotonic() + float(sys.argv[1])
    while any(_running(pid) for pid in groups) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
