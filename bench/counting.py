"""What each side of a comparison asks of the engine, counted where it arrives rather than where it is asked.

- AWS API calls: `ApiCounter` is a small HTTP proxy on loopback in front of the emulator. Both sides get its
  address as AWS_ENDPOINT_URL, so every request that reaches "AWS" passes it, whoever makes it (boto3 in the
  runner, boto3 in a bare script, or an engine's own SDK), retries included. It names each call by its
  action: the `X-Amz-Target` header (JSON protocols), the `Action` form field (query protocols such as
  CloudFormation's), else the method and first path segment (REST protocols such as S3's).
- Engine processes: `EngineCounter` is a folder put first on PATH holding `tofu` and `pulumi`, each a link to
  count-engine.sh, which records the subcommand it was started with and then becomes the real engine. A process
  that an engine starts itself (a provider plugin, the language host) is not an engine process and is not
  counted.

Both count one run at a time: `take()` returns what was counted since the last `take()`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from bench.measure import Command

WRAPPER = Path(__file__).with_name("count-engine.sh")
# Headers that describe one hop, not the message: the proxy sets its own.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class Counting(Protocol):
    def env(self) -> dict[str, str]: ...

    def take(self) -> Counter[str]: ...


class ApiCounter:
    """Counts the calls that reach the AWS endpoint `upstream` through `endpoint`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.endpoint = ""

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint}

    def take(self) -> Counter[str]:
        with self.lock:
            taken, self.calls = self.calls, Counter()
        return taken

    def record(self, action: str) -> None:
        with self.lock:
            self.calls[action] += 1


def action_of(method: str, path: str, headers: Message, body: bytes) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    parts = urlsplit(path)
    form = parse_qs(body.decode(errors="replace")) if b"Action=" in body else {}
    action = (form.get("Action") or parse_qs(parts.query).get("Action") or [""])[0]
    return action or f"{method} /{parts.path.strip('/').split('/', 1)[0]}"


class _Proxy(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass  # requests are counted, not logged

    def _forward(self) -> None:
        body = self._body()
        counter = self.server.counter
        counter.record(action_of(self.command, self.path, self.headers, body))
        upstream = http.client.HTTPConnection(counter.upstream.hostname or "", counter.upstream.port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, counter: ApiCounter) -> None:
        self.counter = counter
        super().__init__(("127.0.0.1", 0), _Proxy)


@contextlib.contextmanager
def api_counter(upstream: str) -> Iterator[ApiCounter]:
    counter = ApiCounter(upstream)
    server = _Server(counter)
    counter.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="api-counter", daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class EngineCounter:
    """Counts the engine processes started with `env()`: `tofu init`, `pulumi up`, ... by subcommand."""

    def __init__(self, folder: Path, engines: Mapping[str, Path], path: str) -> None:
        self.folder = folder
        self.real = folder / "real"
        self.path = path
        self.log = folder / "started.log"
        self.real.mkdir(parents=True)
        for name, binary in engines.items():
            (folder / name).symlink_to(WRAPPER)
            (self.real / name).symlink_to(binary)
        self.log.touch()

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.folder}{os.pathsep}{self.path}",
            "BENCH_ENGINE_LOG": str(self.log),
            "BENCH_ENGINE_DIR": str(self.real),
        }

    def take(self) -> Counter[str]:
        lines = self.log.read_text().splitlines()
        self.log.write_text("")
        return Counter(lines)


def count(command: Command, counter: Counting) -> Counter[str]:
    """Run `command` once through `counter`; what it counted."""
    counter.take()
    command.with_env(counter.env()).run()
    return counter.take()


def total(calls: Counter[str], prefix: str = "") -> int:
    return sum(n for name, n in calls.items() if name.startswith(prefix))


def describe(calls: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(calls.items())) or "none"
