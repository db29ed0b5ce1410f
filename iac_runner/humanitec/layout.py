"""What the Container Driver does to the job's shared directory before our image starts: the definition's
`source` checked out into it, its `files` written there.

Layout: the folder at `source.path` (the whole repository without one) becomes the directory's content, and
`files` land on top of it (a `backend.tf` beside the code, the inputs file). `driver emulate` and `definition
validate` both lay a directory out this way, with the job's own git code (iac_runner/job/source.py) doing the
checkout as it does in a job. The stack's companions among `files` (tfvars, `backend.tf`) join the stack in
whichever subfolder it is: `definition validate` places them there before it looks at the stack, as the runner's
job does; `driver emulate` leaves that to the job, as the driver does.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from iac_runner.backends.base import Backend
from iac_runner.common import paths, typed
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.humanitec.model import DriverSource
from iac_runner.job.companions import companions
from iac_runner.job.settings import parse_settings
from iac_runner.job.source import GitSource, SourceError, checkout, git_auth, stack_folder


def fetch_source(
    source: DriverSource,
    scripts: Path,
    *,
    url_map: Mapping[str, str],
    token: str | None,
    ssh_key: str | None,
    deadline: Deadline,
) -> str | None:
    """Check `source` out into `scripts` as the driver does; returns the commit. Raises SourceError naming the
    part of `source` to blame."""
    url = url_map.get(source.url, source.url)
    if url != source.url:
        log.info(f"source {source.url} is checked out from {url} (--url-map)")
    try:
        parse_settings({"source_url": url})
    except typed.Invalid as exc:
        reason = exc.problems[0].message
        raise SourceError("url", f"The source URL {url!r} {reason}.") from None
    auth = git_auth(url)
    if token and auth != "token":
        log.info("the source URL is not an https:// URL: the token of secret_refs.source.password is not used")
        token = None
    if ssh_key and auth != "ssh":
        log.info("the source URL is not an ssh URL: the key of secret_refs.source.ssh_key is not used")
        ssh_key = None
    git = GitSource(url=url, ref=source.ref, path=source.path, username=source.username, token=token, ssh_key=ssh_key)
    with checkout(git, scripts, source.path, deadline) as found:
        shutil.copytree(found.folder, scripts, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        return found.commit


def write_files(scripts: Path, files: Mapping[str, str], mode: int = 0o644) -> None:
    """The definition's `files`, each at its path under `scripts` (one that would leave it is refused)."""
    for name, text in files.items():
        target = stack_folder(scripts, str(Path(name).parent), "shared directory", must_exist=False) / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text, mode)


def place_companions(backend: Backend, scripts: Path, folder: Path) -> list[str]:
    """Copy the companions beside the stack, as the runner's job does in every layout; returns their names."""
    placed = []
    for path in companions(backend, scripts).values():
        if path.parent != folder:
            shutil.copyfile(path, folder / path.name)
            placed.append(path.name)
    return placed


def companions_keep_state(backend: Backend, scripts: Path) -> bool:
    """Whether the companions declare the stack's own state backend (a `backend.tf` in `files`), asked of the
    backend on a folder of them alone."""
    found = companions(backend, scripts)
    if not found:
        return False
    with tempfile.TemporaryDirectory(prefix="iac-runner-companions-", dir=paths.temp_dir()) as tmp:
        for path in found.values():
            shutil.copyfile(path, Path(tmp) / path.name)
        return not backend.needs_state(Path(tmp))
