"""Source checkout against real git repositories: `file://` URLs and a loopback HTTP server with token auth.

No mocks: every repository is a real bare repository, served either straight from disk (`file://`) or by
`git http-backend` behind `tests.gitserver`, which insists on HTTP Basic auth with the token. The CLI and
container tests run the runner as a subprocess, as a user or the Container Driver would.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from iac_runner.common.errors import ConfigError, ExitCode, RunnerError, RunTimeout
from iac_runner.common.log import log
from iac_runner.common.process import Deadline
from iac_runner.job.settings import Settings, parse_settings
from iac_runner.job.source import DEFAULT_USERNAME, Source, checkout, safe_url, stack_folder
from tests.helpers import SENTINEL, Container, base_env, git, make_repo, run_cli
from tests.helpers.gitserver import GitServer, process_args, serving

TOKEN = "tkn-5b7e1f93c2d84a06"
WRONG_TOKEN = "tkn-wrong-0e4c71aa"
URL_PASSWORD = "pw-in-url-3a9d2c71"
S3_PATH = "stacks/s3-bucket/cloudformation"
MANY = 40  # branches in the many-refs repository: enough for git to gzip its request bodies (> 1 KiB)


# -- repositories ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repos:
    """Bare repositories under one served root.

    stacks.git (HEAD -> main):
        A  marker=A, outside/other.txt, stacks/          <- refs/custom/pinned (no branch or tag)
        B  marker=B, links/{etc -> /etc, up -> ../..}    <- annotated tag v1.0
        C  marker=C                                      <- lightweight tag light
        D  marker=D                                      <- main
        E  marker=E (child of C)                         <- feature, and a branch named light too
    feature-head.git: the same branches and tags, HEAD -> feature.  empty.git: no commits.
    many.git: MANY branches on a chain of empty commits.
    """

    root: Path
    commits: dict[str, str]
    tag_object: str

    @property
    def stacks(self) -> Path:
        return self.root / "stacks.git"

    def file_url(self, name: str = "stacks.git") -> str:
        return (self.root / name).as_uri()


def _commit(work: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    root = tmp_path_factory.mktemp("served")
    bare = make_repo(root / "stacks.git", files={"marker.txt": "A\n", "outside/other.txt": "outside\n"})
    work = root / "stacks.git-work"
    commits = {"A": git("rev-parse", "HEAD", cwd=work)}
    commits["B"] = _commit(work, "B", {"marker.txt": "B\n"})
    git("tag", "-a", "v1.0", "-m", "release 1.0", cwd=work)
    commits["C"] = _commit(work, "C", {"marker.txt": "C\n"})
    git("tag", "light", cwd=work)
    commits["D"] = _commit(work, "D", {"marker.txt": "D\n"})
    git("checkout", "-q", "-b", "feature", commits["C"], cwd=work)
    commits["E"] = _commit(work, "E", {"marker.txt": "E\n"})
    # Links that lead out of the repository, on a branch of their own: a checkout that holds them is refused.
    git("checkout", "-q", "-b", "escapes", commits["D"], cwd=work)
    (work / "links").mkdir()
    os.symlink("/etc", work / "links" / "etc")
    os.symlink("../..", work / "links" / "up")
    commits["F"] = _commit(work, "F", {})
    git("push", "-q", "origin", "main", "feature", "escapes", "v1.0", "light", f"{commits['A']}:refs/custom/pinned",
        f"{commits['E']}:refs/heads/light", cwd=work)  # fmt: skip
    tag_object = git("rev-parse", "refs/tags/v1.0", cwd=bare)
    assert tag_object != commits["B"]  # an annotated tag is an object of its own

    feature_head = root / "feature-head.git"
    git("clone", "-q", "--bare", str(bare), str(feature_head), cwd=root)
    git("symbolic-ref", "HEAD", "refs/heads/feature", cwd=feature_head)

    git("init", "-q", "--bare", str(root / "empty.git"), cwd=root)

    many = root / "many.git-work"
    many.mkdir()
    git("init", "-q", "-b", "main", cwd=many)
    for i in range(MANY):
        git("commit", "-q", "--allow-empty", "-m", f"commit {i}", cwd=many)
        git("branch", f"branch-{i:02d}", cwd=many)
    git("clone", "-q", "--bare", str(many), str(root / "many.git"), cwd=root)
    return Repos(root=root, commits=commits, tag_object=tag_object)


@pytest.fixture(scope="module")
def server(repos: Repos) -> Iterator[GitServer]:
    """The repositories over loopback HTTP, token required."""
    with serving(repos.root, TOKEN) as srv:
        yield srv


@dataclass(frozen=True)
class Remote:
    transport: str
    repos: Repos
    server: GitServer

    def url(self, name: str = "stacks.git") -> str:
        return self.server.url(name) if self.transport == "http" else self.repos.file_url(name)

    def settings(self, ref: str | None = None, path: str | None = None, name: str = "stacks.git") -> Settings:
        values: dict[str, Any] = {"source_url": self.url(name), "source_ref": ref, "source_path": path}
        if self.transport == "http":
            values["source_token"] = TOKEN
        return parse_settings(values)


@pytest.fixture(params=["file", "http"])
def remote(request: pytest.FixtureRequest, repos: Repos, server: GitServer) -> Remote:
    return Remote(request.param, repos, server)


@pytest.fixture
def file_remote(repos: Repos, server: GitServer) -> Remote:
    return Remote("file", repos, server)


@pytest.fixture
def http_remote(repos: Repos, server: GitServer) -> Remote:
    return Remote("http", repos, server)


# -- helpers -----------------------------------------------------------------------------------------------


class Logs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def messages(self) -> list[str]:
        return [json.loads(line)["message"] for line in self.text.splitlines()]


@pytest.fixture
def logs() -> Iterator[Logs]:
    """The runner's log, as JSON lines, for in-process checkouts."""
    captured = Logs()
    log.configure("json", stream=captured.stream)
    try:
        yield captured
    finally:
        log.configure()


@contextlib.contextmanager
def checked_out(settings: Settings, base_dir: Path | None = None, seconds: float = 120) -> Iterator[Source]:
    with checkout(
        settings.git_source(), base_dir or Path("/nonexistent"), settings.source_path, Deadline(seconds)
    ) as source:
        yield source


def fail(settings: Settings, base_dir: Path | None = None, seconds: float = 120) -> RunnerError:
    with pytest.raises(RunnerError) as info, checked_out(settings, base_dir, seconds):
        pass
    return info.value


def worktree(source: Source) -> Path:
    return Path(git("rev-parse", "--show-toplevel", cwd=source.folder))


def closed_port(containing: str = "") -> int:
    """A loopback port nothing listens on; preferably one whose number contains `containing`."""
    candidates = [p for p in range(1024, 65536) if containing in str(p)] if containing else []
    for port in [*candidates, 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise AssertionError("no free port")


def auth_header(token: str, user: str = DEFAULT_USERNAME) -> str:
    return base64.b64encode(f"{user}:{token}".encode()).decode()


# -- refs --------------------------------------------------------------------------------------------------

REFS = [
    ("main", "D"),
    ("feature", "E"),
    ("v1.0", "B"),  # annotated: the commit it points at, not the tag object
    ("light", "C"),  # lightweight; a branch of that name too: the tag wins, as in `git fetch`
    ("refs/heads/light", "E"),  # ... and the full name picks the branch
    ("refs/heads/feature", "E"),
    ("refs/tags/v1.0", "B"),
    ("refs/custom/pinned", "A"),  # any refs/... name the remote advertises
]


@pytest.mark.parametrize(("ref", "expected"), REFS)
def test_checkout_by_ref(remote: Remote, logs: Logs, ref: str, expected: str) -> None:
    sha = remote.repos.commits[expected]
    with checked_out(remote.settings(ref=ref)) as source:
        assert source.commit == sha
        assert source.ref == ref
        assert source.url == remote.url()
        assert (source.folder / "marker.txt").read_text() == f"{expected}\n"
        assert git("rev-parse", "HEAD", cwd=source.folder) == sha
        checkout_dir = source.folder
    assert not checkout_dir.exists(), "the checkout's temp dir must be removed after the run"
    assert f"source {remote.url()} @ {ref} resolved to commit {sha}" in logs.messages
    assert remote.repos.tag_object not in logs.text


def test_checkout_by_full_sha_of_no_ref(remote: Remote, logs: Logs) -> None:
    sha = remote.repos.commits["A"]  # only reachable through refs/custom/pinned: not a branch or tag tip
    with checked_out(remote.settings(ref=sha)) as source:
        assert source.commit == sha
        assert (source.folder / "marker.txt").read_text() == "A\n"
    assert f"source {remote.url()} @ {sha} resolved to commit {sha}" in logs.messages


@pytest.mark.parametrize("length", [7, 12])
def test_checkout_by_short_sha(remote: Remote, length: int) -> None:
    sha = remote.repos.commits["B"]
    with checked_out(remote.settings(ref=sha[:length])) as source:
        assert source.commit == sha
        assert (source.folder / "marker.txt").read_text() == "B\n"


def test_head_and_uppercase_sha_are_accepted(remote: Remote) -> None:
    with checked_out(remote.settings(ref="HEAD")) as source:
        assert source.commit == remote.repos.commits["D"]
    sha = remote.repos.commits["B"]
    with checked_out(remote.settings(ref=sha.upper())) as source:
        assert source.commit == sha
    with checked_out(remote.settings(ref=sha[:8].upper())) as source:
        assert source.commit == sha


def test_default_is_the_remotes_head(remote: Remote, logs: Logs) -> None:
    with checked_out(remote.settings()) as source:
        assert source.commit == remote.repos.commits["D"]
        assert source.ref is None
    assert f"source {remote.url()} @ HEAD resolved to commit {remote.repos.commits['D']}" in logs.messages
    # A remote whose HEAD is another branch: the default follows it, it does not assume "main".
    with checked_out(remote.settings(name="feature-head.git")) as source:
        assert source.commit == remote.repos.commits["E"]
        assert (source.folder / "marker.txt").read_text() == "E\n"


def test_shallow_by_default(remote: Remote) -> None:
    with checked_out(remote.settings(ref="main")) as source:
        assert git("rev-parse", "--is-shallow-repository", cwd=source.folder) == "true"
        assert git("rev-list", "--count", "HEAD", cwd=source.folder) == "1"


# -- subpath: sparse ---------------------------------------------------------------------------------------


def test_subpath_is_sparse(remote: Remote) -> None:
    with checked_out(remote.settings(ref="main", path=S3_PATH)) as source:
        root = worktree(source)
        assert source.folder == root / S3_PATH
        assert (source.folder / "template.yaml").is_file()
        assert (source.folder / "iac-runner.yaml").is_file()
        # Outside the stack's folder: nothing (cone mode keeps only the loose files of its parent folders).
        assert not (root / "stacks" / "queue-topic").exists()
        assert not (root / "stacks" / "redis").exists()
        assert not (root / "outside").exists()
        assert not (root / "links").exists()
        assert git("rev-parse", "--is-shallow-repository", cwd=root) == "true"


def test_subpath_over_http_fetches_no_blobs_outside_it(http_remote: Remote) -> None:
    """A host that allows filters (GitHub does) sends no file contents outside the stack's folder."""
    outside_blob = git("rev-parse", "main:outside/other.txt", cwd=http_remote.repos.stacks)
    inside_blob = git("rev-parse", f"main:{S3_PATH}/template.yaml", cwd=http_remote.repos.stacks)
    with checked_out(http_remote.settings(ref="main", path=S3_PATH)) as source:
        root = worktree(source)
        missing = git("rev-list", "--objects", "--missing=print", "HEAD", cwd=root).split()
        assert f"?{outside_blob}" in missing
        assert f"?{inside_blob}" not in missing


@pytest.mark.parametrize("path", [S3_PATH + "/", "stacks/s3-bucket/./cloudformation"])
def test_subpath_spellings(file_remote: Remote, path: str) -> None:
    with checked_out(file_remote.settings(ref="main", path=path)) as source:
        assert source.folder == worktree(source) / S3_PATH
        assert (source.folder / "template.yaml").is_file()


# -- failures ----------------------------------------------------------------------------------------------


def _config_error(err: RunnerError) -> str:
    assert isinstance(err, ConfigError), f"{type(err).__name__}: {err.render()}"
    assert err.exit_code == ExitCode.CONFIG and int(err.exit_code) == 2
    return err.render()


def test_unknown_ref_lists_branches_and_tags(remote: Remote) -> None:
    text = _config_error(fail(remote.settings(ref="no-such-branch")))
    summary = text.splitlines()[0]
    assert "'no-such-branch'" in summary and remote.url() in summary
    for name in ("main", "feature", "v1.0", "light"):
        assert name in text


def test_unknown_short_sha(remote: Remote) -> None:
    text = _config_error(fail(remote.settings(ref="abcdef1")))
    assert "'abcdef1'" in text and "main" in text and remote.url() in text


def test_unknown_full_sha(remote: Remote) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    text = _config_error(fail(remote.settings(ref=sha)))
    assert sha in text and remote.url() in text


def test_empty_repository(remote: Remote) -> None:
    text = _config_error(fail(remote.settings(name="empty.git")))
    assert (
        text.splitlines()[0]
        == f"The git repository {remote.url('empty.git')} has nothing to check out: its HEAD names no commit."
    )
    assert "Push a commit" in text


@pytest.mark.parametrize("ref", ["main:refs/heads/other", "HEAD~1", "two words", "feat*", "a..b"])
def test_a_ref_that_is_no_ref_name(remote: Remote, ref: str) -> None:
    """The ref travels in a refspec: a name git would not accept is bad input, not an unreachable host."""
    text = _config_error(fail(remote.settings(ref=ref)))
    assert text.splitlines()[0] == f"The ref {ref!r} is not a valid git ref name."


def test_unreachable_closed_port() -> None:
    # A port number that contains "401": an error mentioning the URL must not pass for an auth failure.
    url = f"http://127.0.0.1:{closed_port(containing='401')}/stacks.git"
    text = _config_error(fail(Settings(source_url=url, source_ref="main")))
    assert text.splitlines()[0] == f"The git repository {url} could not be reached."
    assert "credentials" not in text.splitlines()[0]


def test_unreachable_file_path(tmp_path: Path) -> None:
    url = (tmp_path / "missing-403.git").as_uri()  # "403" in the path: not an HTTP status either
    text = _config_error(fail(Settings(source_url=url)))
    assert text.splitlines()[0] == f"The git repository {url} could not be reached."


@pytest.mark.parametrize("with_ps", [True, False])
def test_hanging_host_hits_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_ps: bool) -> None:
    """A host that accepts the connection but never answers: the run's timeout (exit 3), not a hang.

    Without `ps`/`pgrep` on PATH (as in slim container images) too: git's remote helper must not outlive it.
    """
    if not with_ps:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "git").symlink_to(shutil.which("git") or "git")
        monkeypatch.setenv("PATH", str(bin_dir))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/stacks.git"
        before = {a for a in process_args() if url in a}
        started = time.monotonic()
        err = fail(Settings(source_url=url, source_ref="main", timeout=2), seconds=2)
        elapsed = time.monotonic() - started
        leftover = {a for a in process_args() if url in a} - before
    assert isinstance(err, RunTimeout), err.render()
    assert err.exit_code == ExitCode.TIMEOUT
    assert elapsed < 10
    assert not leftover, f"git processes outlived the deadline: {leftover}"


@pytest.mark.parametrize("path", ["../x", "/etc", "stacks/../../x", "links/etc", "links/up", "links", None])
def test_subpath_escaping_the_repository(file_remote: Remote, path: str | None) -> None:
    ref = "main" if path and path.startswith(("..", "/", "stacks")) else "escapes"
    text = _config_error(fail(file_remote.settings(ref=ref, path=path)))
    assert any(s in text for s in ("leaves the repository", "resolves outside the repository", "symlink that leads"))


def test_subpath_that_does_not_exist(file_remote: Remote) -> None:
    text = _config_error(fail(file_remote.settings(ref="main", path="stacks/no-such-stack")))
    assert "'stacks/no-such-stack' does not exist in the repository" in text


# -- HTTP auth ---------------------------------------------------------------------------------------------


def _requests_since(server: GitServer, start: int) -> list[Any]:
    return server.requests[start:]


def test_http_token_travels_as_basic_auth_header(http_remote: Remote, logs: Logs) -> None:
    start = len(http_remote.server.requests)
    with checked_out(http_remote.settings(ref="main", path=S3_PATH)) as source:
        assert source.commit == http_remote.repos.commits["D"]
    seen = _requests_since(http_remote.server, start)
    assert len(seen) >= 3  # the fetch (refs, then the commit and trees), the lazy fetch of the stack's blobs
    assert all(r.authorization and r.authorized and r.status == 200 for r in seen), seen
    assert {r.username for r in seen} == {DEFAULT_USERNAME}
    assert TOKEN not in logs.text and auth_header(TOKEN) not in logs.text


@pytest.mark.parametrize("ref", ["main", "v1.0", None])
def test_the_host_is_asked_for_its_refs_once(http_remote: Remote, ref: str | None) -> None:
    """Each request is a round trip to the git host: one fetch (refs, then the commit and its trees) and the
    lazy fetch of the stack's files, each opening with one GET; no separate listing of the refs."""
    start = len(http_remote.server.requests)
    with checked_out(http_remote.settings(ref=ref, path=S3_PATH)):
        pass
    seen = _requests_since(http_remote.server, start)
    assert [r.method for r in seen].count("GET") == 2, seen
    assert len(seen) <= 5, seen


@pytest.mark.parametrize("token", [TOKEN, None])
def test_git_config_from_the_environment_is_kept(
    repos: Repos, server: GitServer, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """A user's git settings given as GIT_CONFIG_* (a proxy, a URL rewrite, line endings) still hold: the runner's
    own settings are added after them, with or without a token. Without one, the user's URL rewrite is the only
    way to the host and their own header the only auth."""
    url = http_url = f"http://127.0.0.1:{server.port}/"
    settings = [("core.autocrlf", "true")]
    if token is None:
        url = "http://git.alias.invalid/"
        settings += [
            (f"url.{http_url}.insteadOf", url),
            ("http.extraHeader", f"Authorization: Basic {auth_header(TOKEN)}"),
        ]
    monkeypatch.setenv("GIT_CONFIG_COUNT", str(len(settings)))
    for i, (key, value) in enumerate(settings):
        monkeypatch.setenv(f"GIT_CONFIG_KEY_{i}", key)
        monkeypatch.setenv(f"GIT_CONFIG_VALUE_{i}", value)
    values = {"source_url": f"{url}stacks.git", "source_ref": "main", "source_path": S3_PATH, "source_token": token}
    with checked_out(parse_settings(values)) as source:
        assert source.commit == repos.commits["D"]
        assert b"\r\n" in (source.folder / "template.yaml").read_bytes(), "core.autocrlf was not applied"


def test_http_username_is_used(http_remote: Remote) -> None:
    settings = replace(http_remote.settings(ref="main"), source_username="alice")
    start = len(http_remote.server.requests)
    with checked_out(settings):
        pass
    assert {r.username for r in _requests_since(http_remote.server, start)} == {"alice"}


@pytest.mark.parametrize("token", [WRONG_TOKEN, None])
def test_http_bad_or_missing_token(http_remote: Remote, logs: Logs, token: str | None) -> None:
    url = http_remote.url()
    settings = parse_settings({"source_url": url, "source_ref": "main", "source_token": token})
    text = _config_error(fail(settings))
    assert text.splitlines()[0] == f"Git refused the credentials for {url}."
    assert "IAC_RUNNER_SOURCE_TOKEN" in text and "main" in text
    for secret in (TOKEN, WRONG_TOKEN, auth_header(WRONG_TOKEN)):
        assert secret not in text and secret not in logs.text
    assert http_remote.server.requests[-1].status == 401


def test_url_password_sent_as_header(repos: Repos, logs: Logs) -> None:
    with serving(repos.root, URL_PASSWORD, username="someone") as srv:
        shown = srv.url("stacks.git")
        url = shown.replace("http://", f"http://someone:{URL_PASSWORD}@")
        with checked_out(Settings(source_url=url, source_ref="main")) as source:
            assert source.url == shown
            assert git("config", "remote.origin.url", cwd=source.folder) == shown
        wrong = shown.replace("http://", "http://someone:not-the-password@")
        text = _config_error(fail(Settings(source_url=wrong, source_ref="main")))
    assert text.splitlines()[0] == f"Git refused the credentials for {shown}."
    assert "not-the-password" not in text
    for secret in (URL_PASSWORD, "not-the-password"):
        assert secret not in logs.text
    assert all(r.authorization for r in srv.requests), srv.requests


def test_token_with_a_non_http_url_is_rejected(file_remote: Remote) -> None:
    settings = parse_settings({"source_url": file_remote.url(), "source_token": TOKEN})
    text = _config_error(fail(settings))
    assert "not an https:// URL" in text and TOKEN not in text


def test_gzipped_request_bodies(repos: Repos, server: GitServer) -> None:
    """Fetching every branch of a many-ref repo makes git gzip its request; the server must inflate it."""
    sha = git("rev-parse", "branch-00", cwd=repos.root / "many.git")
    start = len(server.requests)
    settings = parse_settings({"source_url": server.url("many.git"), "source_ref": sha[:9], "source_token": TOKEN})
    with checked_out(settings) as source:
        assert source.commit == sha
    seen = _requests_since(server, start)
    assert any(r.encoding == "gzip" for r in seen), seen
    assert all(r.status == 200 for r in seen), (seen, server.errors[-3:])


def test_host_without_filter_or_any_sha_support(repos: Repos) -> None:
    """A stricter host (no partial clone, no uploadpack.allowAnySHA1InWant) still serves a SHA, whole."""
    with serving(repos.root, TOKEN, allow_filter=False, allow_any_sha=False) as strict:
        settings = parse_settings(
            {
                "source_url": strict.url("stacks.git"),
                "source_ref": repos.commits["A"],
                "source_token": TOKEN,
                "source_path": S3_PATH,
            }
        )
        with checked_out(settings) as source:
            assert source.commit == repos.commits["A"]
            assert (source.folder / "template.yaml").is_file()


# -- no URL: the driver's SCRIPTS_DIRECTORY ----------------------------------------------------------------


def test_scripts_directory_without_url(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    with checked_out(Settings(source_path="stack"), base_dir=tmp_path) as source:
        assert source.folder == (tmp_path / "stack").resolve() and source.root == tmp_path.resolve()
    with checked_out(Settings(), base_dir=tmp_path) as source:
        assert source.folder == tmp_path.resolve() and source.commit is None


@pytest.mark.parametrize("path", ["../x", "/etc", "link", "missing"])
def test_scripts_directory_bad_paths(tmp_path: Path, path: str) -> None:
    base = tmp_path / "scripts"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    text = _config_error(fail(Settings(source_path=path), base_dir=base))
    assert "scripts directory" in text


def test_stack_folder_directly(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "inside").symlink_to(tmp_path / "a")
    assert stack_folder(tmp_path, "a/b", "repository") == (tmp_path / "a" / "b").resolve()
    assert stack_folder(tmp_path, "inside/b", "repository") == (tmp_path / "a" / "b").resolve()
    assert stack_folder(tmp_path, None, "repository") == tmp_path.resolve()
    assert stack_folder(tmp_path, "not/yet", "repository", must_exist=False) == tmp_path.resolve() / "not/yet"
    with pytest.raises(ConfigError):
        stack_folder(tmp_path, "../x", "repository", must_exist=False)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa55@git.example.com/org/repo.git", "https://git.example.com/org/repo.git"),
        ("https://tok@git.example.com:8443/repo.git", "https://git.example.com:8443/repo.git"),
        ("https://git.example.com/org/repo.git", "https://git.example.com/org/repo.git"),
        ("ssh://git@git.example.com/org/repo.git", "ssh://git.example.com/org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
    ],
)
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


# -- the CLI and the container, as subprocesses --------------------------------------------------------------


class ProcessSampler:
    """Samples every process's command line (like `ps -eo args`) in a thread while a run goes on."""

    def __init__(self) -> None:
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(process_args())
            time.sleep(0.005)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _validate_args(url: str, ref: str = "main") -> list[str]:
    return [
        "validate",
        "--source-url",
        url,
        "--ref",
        ref,
        "--path",
        S3_PATH,
        "--var",
        "bucket=b1",
        "--log-format",
        "json",
    ]


def _cli_env(**extra: str) -> dict[str, str]:
    return base_env({"IAC_RUNNER_SECRET_apiToken": SENTINEL, **extra})


def _records(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_cli_validate_over_http_token_never_exposed(repos: Repos, tmp_path: Path) -> None:
    with serving(repos.root, TOKEN, snapshot_processes=True) as srv, ProcessSampler() as sampler:
        url = srv.url("stacks.git")
        result = run_cli(_validate_args(url), _cli_env(IAC_RUNNER_SOURCE_TOKEN=TOKEN), cwd=tmp_path)
    result.assert_ok()
    assert "is valid" in result.stdout
    sha = repos.commits["D"]
    records = _records(result.stderr)
    assert any(r["message"] == f"source {url} @ main resolved to commit {sha}" for r in records)
    assert any(r.get("commit") == sha for r in records)
    for secret in (TOKEN, auth_header(TOKEN)):
        assert secret not in result.log
    # The server saw the token on every request, as a header.
    assert srv.requests and all(r.authorized for r in srv.requests), srv.requests
    # No process's argv held the token while git talked to the server (snapshots taken during each request),
    # nor at any moment the sampler looked.
    snapshots = srv.process_snapshots + sampler.samples
    git_argv = [a for snap in srv.process_snapshots for a in snap if "git" in a and url in a]
    assert git_argv, "the snapshots caught no git process talking to the server"
    for snap in snapshots:
        for args in snap:
            assert TOKEN not in args and auth_header(TOKEN) not in args, args


def test_cli_wrong_token(repos: Repos, server: GitServer, tmp_path: Path) -> None:
    url = server.url("stacks.git")
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(
        [*_validate_args(url), "--out-dir", str(out)], _cli_env(IAC_RUNNER_SOURCE_TOKEN=WRONG_TOKEN), cwd=tmp_path
    )
    assert result.returncode == 2, result.log
    error = (out / "error.txt").read_text()
    assert error.splitlines()[0] == f"Git refused the credentials for {url}."
    assert "IAC_RUNNER_SOURCE_TOKEN" in error
    assert "Traceback" not in result.log
    for secret in (WRONG_TOKEN, auth_header(WRONG_TOKEN)):
        assert secret not in result.log and secret not in error
    assert not (out / "outputs.json").exists()


def test_cli_url_with_password_never_exposed(repos: Repos, tmp_path: Path) -> None:
    """A password embedded in the URL is treated like the token: not in a log, an argv or the repo's config."""
    with serving(repos.root, URL_PASSWORD, username="someone", snapshot_processes=True) as srv:
        url = f"http://someone:{URL_PASSWORD}@127.0.0.1:{srv.port}/stacks.git"
        shown = f"http://127.0.0.1:{srv.port}/stacks.git"
        args = [a for a in _validate_args("-", ref="main") if a not in ("--source-url", "-")]
        env = _cli_env(IAC_RUNNER_SOURCE_URL=url)  # in the env, so that the runner's own argv is clean too
        result = run_cli(args, env, cwd=tmp_path)
        failed = run_cli([*args, "--ref", "no-such-ref"], env, cwd=tmp_path)
    result.assert_ok()
    assert failed.returncode == 2
    assert f"The ref 'no-such-ref' does not exist in {shown}." in failed.log
    for run in (result, failed):
        assert URL_PASSWORD not in run.log
        assert shown in run.log
        assert "carries a password" in run.log
    assert srv.requests and all(r.authorized and r.username == "someone" for r in srv.requests), srv.requests
    git_argv = [a for snap in srv.process_snapshots for a in snap if "git" in a and str(srv.port) in a]
    assert git_argv, "the snapshots caught no git process talking to the server"
    for snap in srv.process_snapshots:
        for argv in snap:
            assert URL_PASSWORD not in argv, argv


def test_cli_unknown_ref_and_unreachable(repos: Repos, tmp_path: Path) -> None:
    result = run_cli(_validate_args(repos.file_url(), ref="nope"), _cli_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert f"The ref 'nope' does not exist in {repos.file_url()}." in result.log
    assert "Traceback" not in result.log
    url = f"http://127.0.0.1:{closed_port()}/stacks.git"
    result = run_cli(_validate_args(url), _cli_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert f"The git repository {url} could not be reached." in result.log


def test_cli_subpath_escape(repos: Repos, tmp_path: Path) -> None:
    args = ["validate", "--source-url", repos.file_url(), "--path", "../outside", "--log-format", "json"]
    result = run_cli(args, _cli_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "leaves the repository" in result.log


def test_cli_without_git_on_path(repos: Repos, tmp_path: Path) -> None:
    env = _cli_env(PATH=str(tmp_path / "empty-bin"))
    result = run_cli(_validate_args(repos.file_url()), env, cwd=tmp_path)
    assert result.returncode == 1, result.log
    assert "The git executable was not found" in result.log
    assert "Internal error" not in result.log and "Traceback" not in result.log


S3_INPUTS = {"bucket": "source-test-bucket", "environment": "development", "versioning": True}


def test_container_create_and_destroy_from_http_source(
    container: Container, aws: dict[str, str], server: GitServer, repos: Repos
) -> None:
    container.env.update(aws)
    container.env.update(
        {
            "IAC_RUNNER_SOURCE_URL": server.url("stacks.git"),
            "IAC_RUNNER_SOURCE_REF": "v1.0",
            "IAC_RUNNER_SOURCE_PATH": S3_PATH,
            "IAC_RUNNER_SOURCE_TOKEN": TOKEN,
            "IAC_RUNNER_STACK_NAME": "source-test",
        }
    )
    created = container.run("create", S3_INPUTS, secrets={"apiToken": SENTINEL})
    created.assert_ok()
    assert created.json("values")["bucket"] == "source-test-bucket"
    assert f"resolved to commit {repos.commits['B']}" in created.log
    assert TOKEN not in created.log
    destroyed = container.run("destroy", S3_INPUTS, secrets={"apiToken": SENTINEL})
    destroyed.assert_ok()
    assert destroyed.json("values") == {} and destroyed.json("secrets") == {}


CONTAINER_SOURCE_ERRORS = [
    ({"IAC_RUNNER_SOURCE_TOKEN": WRONG_TOKEN}, "Git refused the credentials for {url}."),
    ({"IAC_RUNNER_SOURCE_TOKEN": TOKEN, "IAC_RUNNER_SOURCE_REF": "nope"}, "The ref 'nope' does not exist in {url}."),
    (
        {"IAC_RUNNER_SOURCE_TOKEN": TOKEN, "IAC_RUNNER_SOURCE_PATH": "../../etc"},
        "The stack path '../../etc' leaves the repository.",
    ),
]


@pytest.mark.parametrize(("env", "first_line"), CONTAINER_SOURCE_ERRORS)
def test_container_source_errors(container: Container, server: GitServer, env: dict[str, str], first_line: str) -> None:
    url = server.url("stacks.git")
    result = container.run(
        "create",
        S3_INPUTS,
        secrets={"apiToken": SENTINEL},
        env={"IAC_RUNNER_SOURCE_URL": url, "IAC_RUNNER_SOURCE_PATH": S3_PATH, "IAC_RUNNER_STACK_NAME": "src", **env},
    )
    assert result.returncode == 2, result.log
    assert result.error.splitlines()[0] == first_line.format(url=url)
    assert "Traceback" not in result.log + result.error
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in result.log and secret not in result.error
    assert not result.files["values"].exists() and not result.files["secrets"].exists()
