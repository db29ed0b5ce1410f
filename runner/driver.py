"""What the Container Driver does to the job's shared directory before our image starts: the definition's
`source` checked out into it, its `files` written there.

Layout: the folder at `source.path` (the whole repository without one) becomes the directory's content, and
`files` land on top of it (a `backend.tf` beside the code, the inputs file). `driver emulate` and `definition
validate` both lay a directory out this way, with runner/source.py doing the git work as it does in a job.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr, ValidationError

from runner.definitions import Source
from runner.errors import ConfigError, RunnerError
from runner.files import write_atomic
from runner.log import log
from runner.process import Deadline
from runner.settings import Settings
from runner.source import checkout, stack_folder


class SourceError(ConfigError):
    """The checkout failed; `part` says which part of `source` to blame: url, ref or path."""

    def __init__(self, part: str, error: RunnerError) -> None:
        super().__init__(error.summary, where=error.where, fix=error.fix, details=error.details)
        self.part = part


def fetch_source(
    source: Source,
    scripts: Path,
    *,
    url_map: Mapping[str, str],
    token: str | None,
    ssh_key: str | None,
    deadline: Deadline,
) -> str | None:
    """Check `source` out into `scripts` as the driver does; returns the commit."""
    url = url_map.get(source.url, source.url)
    if url != source.url:
        log.info(f"source {source.url} is checked out from {url} (--url-map)")
    https = url.startswith(("https://", "http://"))
    if token and not https:
        log.info("the source URL is not an https:// URL: the token of secret_refs.source.password is not used")
        token = None
    if ssh_key and https:
        log.info("the source URL is an https:// URL: the key of secret_refs.source.ssh_key is not used")
        ssh_key = None
    try:
        settings = Settings(
            source_url=url,
            source_ref=source.ref,
            source_path=source.path,
            source_username=source.username,
            source_token=SecretStr(token) if token else None,
            source_ssh_key=SecretStr(ssh_key) if ssh_key else None,
        )
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise SourceError("url", ConfigError(f"The source URL {url!r} {reason}.")) from None
    try:
        with checkout(settings, scripts, deadline) as found:
            shutil.copytree(
                found.folder, scripts, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(".git")
            )
            return found.commit
    except SourceError:
        raise
    except ConfigError as exc:
        raise SourceError(_part(exc), exc) from None


def _part(error: ConfigError) -> str:
    if error.summary.startswith("The ref ") or error.summary.startswith("git fetch"):
        return "ref"
    if error.summary.startswith("The stack path "):
        return "path"
    return "url"


def write_files(scripts: Path, files: Mapping[str, str], mode: int = 0o644) -> None:
    """The definition's `files`, each at its path under `scripts` (one that would leave it is refused)."""
    for name, text in files.items():
        target = stack_folder(scripts, str(Path(name).parent), "shared directory", must_exist=False) / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text, mode)
