"""A loopback HTTP git server for tests: `git http-backend` run as CGI behind `http.server`, with token auth.

Every request must carry HTTP Basic auth whose password is the server's token (and whose user is the given
username, when one is given); anything else gets `401` with `WWW-Authenticate: Basic realm="git"`, as GitHub
and GitLab answer. Each request is recorded (method, path, whether an Authorization header came, whether it
was accepted) so tests can assert how the client authenticated, and, with `snapshot_processes`, the command
lines of every process on the machine at that moment, taken while the git client is waiting for the answer,
so tests can assert that no secret appears in any process's argv.

The served repositories get what real hosts allow (GitHub allows both): `uploadpack.allowFilter` (partial
clone, `--filter=blob:none`) and `uploadpack.allowAnySHA1InWant` (fetching a commit by SHA), set through the
backend's environment so the repositories on disk stay untouched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import os
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REALM = 'Basic realm="git"'


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    authorization: bool  # an Authorization header was sent
    authorized: bool  # ... and it carried the right credentials
    username: str | None
    status: int
    encoding: str = ""  # the request body's Content-Encoding (git gzips request bodies over 1 KiB)
    chunked: bool = False
    sent: int = 0  # the response body's size in bytes


@dataclass
class GitServer:
    root: Path
    token: str
    username: str | None = None
    allow_filter: bool = True
    allow_any_sha: bool = True
    snapshot_processes: bool = False
    requests: list[Request] = field(default_factory=list)
    process_snapshots: list[list[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def snapshot(self) -> None:
        if self.snapshot_processes:
            args = process_args()
            with self._lock:
                self.process_snapshots.append(args)

    def backend_env(self) -> dict[str, str]:
        config = {
            "uploadpack.allowFilter": self.allow_filter,
            "uploadpack.allowAnySHA1InWant": self.allow_any_sha,
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": str(len(config)),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "tests.gitserver",
        }
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = "true" if value else "false"
        return env


def process_args() -> list[str]:
    """The command line of every process this user can see (as `ps -eo args` would show it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "cmdline").read_bytes()
            if raw:
                found.append(raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"))
    return found


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection; the body ends when the connection closes

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet; requests are recorded instead

    def _serve(self) -> None:
        git = self.server.git
        git.snapshot()
        parts = urlsplit(self.path)
        user, authorized = self._check_auth(git)

        def record(accepted: bool, status: int, sent: int = 0) -> None:
            git.record(
                Request(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    authorization=self.headers.get("Authorization") is not None,
                    authorized=accepted,
                    username=user,
                    status=status,
                    encoding=self.headers.get("Content-Encoding", "").lower(),
                    chunked=self.headers.get("Transfer-Encoding", "").lower() == "chunked",
                    sent=sent,
                )
            )

        try:
            body = self._body()
        except (OSError, ValueError, EOFError, zlib.error) as exc:
            git.errors.append(f"bad request body: {exc}")
            self._plain(400, "bad request body\n")
            record(authorized, 400)
            return
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", REALM)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"authentication required\n")
            record(False, 401)
            return
        record(True, *self._cgi(git, parts.path, parts.query, body, user or ""))

    def _check_auth(self, git: GitServer) -> tuple[str | None, bool]:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        ok = password == git.token and (git.username is None or user == git.username)
        return user, ok

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = self._chunked()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            data = gzip.decompress(data)
        elif encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        return data

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    def _cgi(self, git: GitServer, path: str, query: str, body: bytes, user: str) -> tuple[int, int]:
        """Run `git http-backend` for the request and send its answer: the status and the body's size."""
        env = git.backend_env()
        env.update(
            {
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": self.client_address[0],
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": str(git.port),
            }
        )
        protocol = self.headers.get("Git-Protocol")
        if protocol:
            env["HTTP_GIT_PROTOCOL"] = protocol  # protocol v2 is negotiated through this header
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120, check=False
        )
        if proc.stderr:
            git.errors.append(proc.stderr.decode(errors="replace"))
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        if not sep:
            self._plain(500, "git http-backend gave no CGI headers\n")
            return 500, 0
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "status":
                status = int(value.strip().split()[0])
            elif name.strip():
                headers.append((name.strip(), value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return status, len(payload)

    def _plain(self, status: int, text: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(text.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, git: GitServer) -> None:
        self.git = git
        super().__init__(("127.0.0.1", 0), _Handler)


@contextlib.contextmanager
def serving(
    root: Path,
    token: str,
    *,
    username: str | None = None,
    allow_filter: bool = True,
    allow_any_sha: bool = True,
    snapshot_processes: bool = False,
) -> Iterator[GitServer]:
    """Serve the bare repositories under `root` at http://127.0.0.1:<port>/<name> until the block ends."""
    git = GitServer(
        root=root,
        token=token,
        username=username,
        allow_filter=allow_filter,
        allow_any_sha=allow_any_sha,
        snapshot_processes=snapshot_processes,
    )
    server = _Server(git)
    git.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="gitserver", daemon=True)
    thread.start()
    try:
        yield git
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
