"""Where the stack comes from: a git checkout (shallow, sparse) or the driver's SCRIPTS_DIRECTORY.

Credentials never reach a URL, a process argument or a log: an HTTPS token travels as an `http.extraHeader`
set through git's GIT_CONFIG_* environment, an SSH key as a 0600 file in a private temp dir.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from iac_runner.common import paths, process
from iac_runner.common.errors import ConfigError, EngineError
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.common.retry import Retry, transient_reason
from iac_runner.common.secrets import REGISTRY

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")
DEFAULT_USERNAME = "x-access-token"
_TARGET = "refs/iac-runner/target"
# git's words (client and host side) for a ref or commit the host does not have.
_MISSING_REF_ERRORS = ("couldn't find remote ref", "not our ref", "unadvertised object", "no such remote ref")


GitAuth = Literal["token", "ssh", "none"]


@dataclass(frozen=True)
class GitSource:
    """A git repository to check the stack out of, and the credentials for it."""

    url: str
    ref: str | None = None
    #: The stack's folder inside the repository.
    path: str | None = None
    token: str | None = None
    username: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    #: More folders of the repository the stack needs (besides those the backend finds itself).
    include: tuple[str, ...] = ()


@dataclass
class Source:
    """The stack folder a run works in, where it came from, and the folder it may reach (the checkout's root, or
    the base folder): `widen` checks out more of the repository when the stack needs code beside it."""

    folder: Path
    root: Path
    commit: str | None = None
    url: str | None = None
    ref: str | None = None
    widen: Callable[[list[str]], None] | None = None
    #: The repository's folders a sparse checkout holds (empty: all of it).
    sparse: list[str] = field(default_factory=list)

    def include(self, folders: Iterable[Path]) -> None:
        """Make `folders` (inside the root) present: a sparse checkout fetches them, a plain folder has them."""
        wanted = sorted({str(f.relative_to(self.root)) for f in folders if f.is_relative_to(self.root)} - {"."})
        missing = [w for w in wanted if not (self.root / w).is_dir()]
        if missing and self.widen is not None:
            self.widen(missing)
            self.sparse += missing


class SourceError(ConfigError):
    """The stack could not be checked out; `part` is the part of the source to blame: url, ref or path."""

    def __init__(
        self, part: str, summary: str, *, where: str = "", fix: str = "", details: str = "", credentials: bool = False
    ) -> None:
        super().__init__(summary, where=where, fix=fix, details=details)
        self.part = part
        #: The git host refused the credentials (never worth a retry).
        self.credentials = credentials


class _MissingRef(SourceError):
    """The host has no such ref: `_fetch` turns it into a message that lists the refs it does have."""


def git_auth(url: str) -> GitAuth:
    """Which credential a git URL takes: a token goes with https://, a key with ssh."""
    if url.startswith(("https://", "http://")):
        return "token"
    if url.startswith("ssh://") or re.match(r"^[\w.\-]+@[\w.\-]+:", url):
        return "ssh"
    return "none"


def safe_url(url: str) -> str:
    """The URL with any user info removed, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def stack_folder(root: Path, subpath: str | None, label: str, *, must_exist: bool = True) -> Path:
    """`root/subpath`, refusing anything that leaves `root` (`..`, absolute paths, symlinks out)."""
    if subpath:
        pure = PurePosixPath(subpath)
        if pure.is_absolute() or ".." in pure.parts:
            raise SourceError(
                "path",
                f"The stack path {subpath!r} leaves the {label}.",
                where="IAC_RUNNER_SOURCE_PATH (--path)",
                fix=f"Give a relative path inside the {label}, without '..', e.g. stacks/s3-bucket/cloudformation.",
            )
    folder = (root / (subpath or ".")).resolve()
    if not folder.is_relative_to(root.resolve()):
        raise SourceError(
            "path",
            f"The stack path {subpath!r} resolves outside the {label} (through a symlink).",
            where=f"IAC_RUNNER_SOURCE_PATH (--path) -> {folder}",
            fix="Point the path at a real folder inside the repository, not a symlink leading out of it.",
        )
    if must_exist and not folder.is_dir():
        raise SourceError(
            "path",
            f"The stack path {subpath or '.'!r} does not exist in the {label}.",
            where=f"{root}",
            fix="Check IAC_RUNNER_SOURCE_PATH (--path) and the ref: the folder must exist at that commit.",
        )
    return folder


@contextlib.contextmanager
def checkout(
    git: GitSource | None, base_dir: Path, subpath: str | None, deadline: Deadline, retries: int = 0
) -> Iterator[Source]:
    """The stack folder for this run: `subpath` of a git checkout (in a temp dir removed afterwards), or of
    `base_dir` when there is no git source. Symlinks that lead out of either are refused."""
    if git is None:
        root = base_dir.resolve()
        folder = stack_folder(root, subpath, "scripts directory")
        check_links(folder, root)
        yield Source(folder=folder, root=root)
        return
    with tempfile.TemporaryDirectory(prefix="iac-runner-", dir=paths.temp_dir()) as tmp:
        yield _GitCheckout(git, Path(tmp), deadline, Retry(retries, deadline)).run()


def check_links(folder: Path, root: Path) -> None:
    """No symlink under `folder` may lead out of `root`: a committed link to /etc or to the runner's own files
    must not reach the engine."""
    for path in _links(folder):
        target = path.resolve()
        if not target.is_relative_to(root):
            raise SourceError(
                "path",
                f"The stack holds a symlink that leads out of the repository: {path.relative_to(root)}.",
                where=f"{path.relative_to(root)} -> {os.readlink(path)}",
                fix="Replace the link with the file it points at, or point it inside the repository.",
            )


def _links(folder: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(current) / name
            if path.is_symlink():
                yield path
        dirs[:] = [d for d in dirs if d != ".git" and not (Path(current) / d).is_symlink()]


class _GitCheckout:
    def __init__(self, git: GitSource, tmp: Path, deadline: Deadline, retry: Retry) -> None:
        self.git = git
        self.url = git.url
        self.shown = safe_url(self.url)
        self.ref = git.ref
        self.tmp = tmp
        self.deadline = deadline
        self.retry = retry
        self.env = self._environment()

    def run(self) -> Source:
        try:
            from git import Repo
        except ImportError:  # GitPython refuses to load when no git executable is found
            raise EngineError(
                "The git executable was not found: a source URL needs git to check the stack out.",
                where=f"IAC_RUNNER_SOURCE_URL={self.shown}",
                fix="Install git or put it on PATH, or leave IAC_RUNNER_SOURCE_URL unset to read the stack from "
                "SCRIPTS_DIRECTORY (or STACK_DIR).",
            ) from None

        log.step(f"checking out {self.shown}" + (f" at {self.ref}" if self.ref else ""))
        dest = self.tmp / "repo"
        repo = Repo.init(dest)
        repo.create_remote("origin", self.url)
        for wanted in (self.git.path, *self.git.include):
            stack_folder(dest, wanted, "repository", must_exist=False)  # reject escapes before any fetch
        path = (self.git.path or "").strip("/")
        folders = [p for p in dict.fromkeys([path, *self.git.include]) if p]
        if folders:
            repo.git.sparse_checkout("set", "--cone", *folders)
        commit = self._fetch(repo)
        self._remote(dest, "checkout", "--detach", commit)
        folder = stack_folder(dest, path, "repository")
        check_links(folder, dest.resolve())
        log.info(f"source {self.shown} @ {self.ref or 'HEAD'} resolved to commit {commit}")
        log.info(f"checked out: {', '.join(folders) if folders else 'the whole repository'}")

        def widen(more: list[str]) -> None:
            log.info(f"the stack uses code beside it: checking out {', '.join(more)} too")
            repo.git.sparse_checkout("add", *more)
            self._remote(dest, "checkout", "--detach", commit)
            for extra in more:
                if (dest / extra).is_dir():
                    check_links(dest / extra, dest.resolve())

        return Source(
            folder=folder, root=dest.resolve(), commit=commit, url=self.shown, ref=self.ref, widen=widen, sparse=folders
        )

    def _environment(self) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
        # The checkout lives for one run: no background maintenance after a fetch, no advice on stderr.
        config = {"maintenance.auto": "false", "gc.auto": "0", "advice.detachedHead": "false"}
        parts = urlsplit(self.url)
        token = self.git.token
        user = self.git.username or DEFAULT_USERNAME
        if parts.password:
            REGISTRY.add_all([parts.password, unquote(parts.password)])
            log.warning("the source URL carries a password; pass it as IAC_RUNNER_SOURCE_TOKEN instead")
            if parts.scheme in ("http", "https"):
                # Sent like a token (a header in the environment), so git's argv and .git/config never hold it.
                self.url = self.shown
                if not token:
                    token, user = unquote(parts.password), unquote(parts.username or "") or user
        if token:
            if git_auth(self.url) != "token":
                raise SourceError(
                    "url",
                    "IAC_RUNNER_SOURCE_TOKEN is set but the source URL is not an https:// URL.",
                    where=f"IAC_RUNNER_SOURCE_URL={self.shown}",
                    fix="Use the repository's https:// URL with a token, or IAC_RUNNER_SOURCE_SSH_KEY for ssh.",
                )
            header = base64.b64encode(f"{user}:{token}".encode()).decode()
            REGISTRY.add_all([token, header])
            origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/"
            config[f"http.{origin}.extraHeader"] = f"Authorization: Basic {header}"
        if self.git.ssh_key:
            env["GIT_SSH_COMMAND"] = self._ssh_command(self.git.ssh_key)
        # After the settings the user gives git the same way (a proxy, a URL rewrite, a CA), which still hold.
        given = os.environ.get("GIT_CONFIG_COUNT", "0")
        first = int(given) if given.isdigit() else 0
        env["GIT_CONFIG_COUNT"] = str(first + len(config))
        for i, (key, value) in enumerate(config.items(), start=first):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        return env

    def _ssh_command(self, key: str) -> str:
        REGISTRY.add(key)
        ssh_dir = self.tmp / "ssh"
        ssh_dir.mkdir(mode=0o700)
        key_file = ssh_dir / "id"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.strip() + "\n")
        known_hosts = ssh_dir / "known_hosts"
        if self.git.known_hosts:
            known_hosts.write_text(self.git.known_hosts.strip() + "\n")
            checking = "yes"
        else:
            log.warning(
                "no IAC_RUNNER_SOURCE_KNOWN_HOSTS given: the git host's key is accepted on first use; "
                "set it to pin the host key"
            )
            checking = "accept-new"
        return shlex.join(
            [
                "ssh", "-i", str(key_file), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"StrictHostKeyChecking={checking}", "-o", f"UserKnownHostsFile={known_hosts}",
            ]
        )  # fmt: skip

    def _remote(self, cwd: Path | None, *args: str) -> str:
        """A git command that talks to the remote (or may, in a partial clone): through the process seam, so the
        run's deadline and signals reach git and its remote helper alike, and tried again after a transient
        fault (a reset connection, a 5xx). Local steps use GitPython."""
        command = next(a for a in args if not a.startswith("-") and "=" not in a)
        attempt = 0
        while True:
            done = process.run(
                ["git", *args],
                engine="git",
                deadline=self.deadline,
                cwd=cwd,
                env={**os.environ, **self.env},
                on_stdout=lambda line: None,
                on_stderr=lambda line: log.debug(f"git: {line}"),
                doing=f"running git {command}",
            )
            if done.returncode == 0:
                return done.stdout.strip()
            error = self._error(command, done.stderr)
            attempt += 1
            reason = None if error.credentials else transient_reason(done.stderr)
            if reason is None or not self.retry.pause(attempt, f"git {command}", reason):
                raise error

    def _fetch(self, repo: Any) -> str:
        """Fetch just the commit the ref names (shallow, no file contents yet) and return its SHA.

        The host resolves the name as `git fetch` does (an exact refs/... name, then a tag, then a branch), so
        the common path asks for refs once; branches and tags are listed only to explain a ref that is not there."""
        fetch = functools.partial(self._remote, Path(repo.working_dir), "fetch")
        ref = self.ref or "HEAD"
        sha = ref.lower()
        try:
            # --no-tags: following tags would make the host list every tag it has.
            wanted = sha if _FULL_SHA.match(sha) else ref
            fetch("--depth", "1", "--filter=blob:none", "--no-tags", "origin", f"+{wanted}:{_TARGET}")
            return str(repo.commit(_TARGET).hexsha)
        except _MissingRef:
            if not _SHORT_SHA.match(sha):
                raise self._unknown_ref() from None
        # A short SHA cannot be asked of the server: fetch the history (no file contents) and resolve.
        fetch("--filter=blob:none", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        with contextlib.suppress(Exception):  # gitdb's BadName / ValueError: no such commit
            return str(repo.commit(sha).hexsha)
        raise self._unknown_ref()

    def _unknown_ref(self) -> SourceError:
        names = [
            line.partition("\t")[2]
            for line in self._remote(None, "ls-remote", "--refs", "--heads", "--tags", self.url).splitlines()
        ]
        branches = ", ".join([r.removeprefix("refs/heads/") for r in names if r.startswith("refs/heads/")][:10])
        tags = ", ".join([r.removeprefix("refs/tags/") for r in names if r.startswith("refs/tags/")][:10])
        choices = f"a branch ({branches or 'none'}), a tag ({tags or 'none'}), a commit SHA or a full refs/... name"
        if self.ref is None:
            return SourceError(
                "ref",
                f"The git repository {self.shown} has nothing to check out: its HEAD names no commit.",
                where="IAC_RUNNER_SOURCE_REF (--ref) is not set",
                fix=f"Push a commit to the repository's default branch, or set IAC_RUNNER_SOURCE_REF to {choices}.",
            )
        return SourceError(
            "ref",
            f"The ref {self.ref!r} does not exist in {self.shown}.",
            where="IAC_RUNNER_SOURCE_REF (--ref)",
            fix=f"Use {choices}.",
        )

    def _error(self, command: str, stderr: str) -> SourceError:
        text = REGISTRY.redact(stderr).strip()
        lower = text.lower()
        detail = "\n".join(line.strip() for line in text.splitlines()[-5:])
        where = f"IAC_RUNNER_SOURCE_URL={self.shown}, IAC_RUNNER_SOURCE_REF={self.ref or '(remote HEAD)'}"
        # git's own wording only: a bare "401" would also match a port, a path or a SHA in the message.
        if any(s in lower for s in ("authentication failed", "returned error: 403", "returned error: 401",
                                    "permission denied", "could not read username", "could not read password",
                                    "host key verification failed")):  # fmt: skip
            return SourceError(
                "url",
                f"Git refused the credentials for {self.shown}.",
                credentials=True,
                where=where,
                fix="Check IAC_RUNNER_SOURCE_TOKEN (and IAC_RUNNER_SOURCE_USERNAME) or IAC_RUNNER_SOURCE_SSH_KEY "
                "and IAC_RUNNER_SOURCE_KNOWN_HOSTS: the token needs read access to the repository.",
                details=detail,
            )
        if "invalid refspec" in lower:
            return SourceError(
                "ref",
                f"The ref {self.ref!r} is not a valid git ref name.",
                where="IAC_RUNNER_SOURCE_REF (--ref)",
                fix="Use a branch, a tag, a commit SHA or a full refs/... name, as `git check-ref-format` accepts "
                "them (no spaces, ':', '~', '^', '?', '*', '[' or '..').",
            )
        if any(s in lower for s in _MISSING_REF_ERRORS):
            return _MissingRef(
                "ref", f"git {command}: no such ref in {self.shown}.", where=where, fix="Check the ref.", details=detail
            )
        if command in ("ls-remote", "fetch"):
            return SourceError(
                "url",
                f"The git repository {self.shown} could not be reached.",
                where=where,
                fix="Check the URL, the network path to the git host and that the repository exists.",
                details=detail,
            )
        return SourceError(
            "ref", f"git {command} failed for {self.shown}.", where=where, fix="Check the ref and path.", details=detail
        )
