"""Where the runner keeps things on this machine: the per-user cache and state folders (XDG), and the engines a
source checkout's `make tools` links into `.tools/`.

A pod with a read-only root filesystem may leave HOME unwritable: `writable` falls back to a private folder
under the temp dir (the one writable place such a pod has) and says so, rather than failing on a cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log

APP = "iac-driver-runner"
#: The pinned engines of a source checkout (`make tools`); absent in a wheel install, where engines come from PATH.
TOOLS = Path(__file__).resolve().parents[2] / ".tools"


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP


def state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / APP


def find_executable(name: str) -> str | None:
    """`name` on PATH, else in the checkout's `.tools/bin`."""
    return shutil.which(name) or shutil.which(name, path=str(TOOLS / "bin"))


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) with mode 0700; an existing folder keeps its mode."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def temp_dir() -> Path:
    """The system's temp dir (TMPDIR, /tmp, /var/tmp, the working folder: the first writable one)."""
    try:
        return Path(tempfile.gettempdir())
    except FileNotFoundError:
        raise ConfigError(
            f"No writable temp folder: TMPDIR ({os.environ.get('TMPDIR') or 'unset'}), /tmp, /var/tmp and the "
            "working folder are all read-only or missing.",
            where="TMPDIR",
            fix="Give the job a writable /tmp (an emptyDir volume under a read-only root filesystem) or point "
            "TMPDIR at a writable folder.",
        ) from None


def writable(preferred: Path, purpose: str, *, setting: str = "") -> Path:
    """`preferred` created if missing, or, when it cannot be written, a private folder under the temp dir."""
    try:
        private_dir(preferred)
        if os.access(preferred, os.W_OK | os.X_OK):
            return preferred
    except OSError:
        pass
    fallback = temp_dir() / f"{APP}-{os.getuid()}" / preferred.name
    try:
        private_dir(fallback.parent)
        private_dir(fallback)
    except OSError as exc:
        raise ConfigError(
            f"No writable folder for the {purpose}: {preferred} and {fallback} both fail ({exc.strerror}).",
            where=setting or str(preferred),
            fix="Give the job a writable HOME or TMPDIR (a read-only root filesystem needs an emptyDir on /tmp)"
            + (f", or point {setting} at a writable folder." if setting else "."),
        ) from None
    log.warning(f"{preferred} is not writable: the {purpose} is kept in {fallback} for this run")
    return fallback
