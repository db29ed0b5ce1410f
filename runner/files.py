"""The one way the runner writes a file the outside world reads: atomically, with an explicit mode."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A reader never sees a half-written file, and a failed write leaves any previous file as it was.
    The temp file is created with `mode` from the start so a secret is never briefly world-readable.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable_dir(path: Path) -> str | None:
    """Why a file cannot be created at `path`, or None when it can."""
    directory = path.parent
    if path.is_dir():
        return f"{path} is a directory"
    if not directory.is_dir():
        return f"its directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"its directory {directory} is not writable by this user (uid {os.getuid()})"
    return None
