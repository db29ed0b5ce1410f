"""A loopback HTTP proxy in front of a real server (moto, the git server) that makes faults happen for real: it
fails the next N requests (503, a reset connection, an AWS throttling answer), delays them, or goes down, and
counts what passed through. Engines and git reach the server through it as they would through a flaky network.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Fault = Literal["503", "reset", "throttle"]
_THROTTLE = (
    b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>'
    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"
)


@dataclass
class FaultProxy:
    target: str
    url: str = ""
    #: Faults still to inject, in order, each for one request.
    faults: list[Fault] = field(default_factory=list)
    delay: float = 0.0
    down: bool = False
    #: Every request seen: (method, path, answered with a fault?).
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, fault: Fault) -> None:
        with self.lock:
            self.faults.extend([fault] * count)

    def take(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def count(self, what: str = "") -> int:
        return sum(1 for method, path, _ in self.requests if what in f"{method} {path}")


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            action = body.decode(errors="replace").split("Action=", 1)[-1].split("&", 1)[0] if body else ""
            if proxy.down:
                proxy.requests.append((self.command, self.path, "down"))
                self._reset()
                return
            fault = proxy.take()
            proxy.requests.append((self.command, f"{self.path} {action}".strip(), fault or ""))
            if proxy.delay:
                time.sleep(proxy.delay)
            if fault == "reset":
                self._reset()
                return
            if fault == "503":
                self._answer(503, b"Service Unavailable", {"Content-Type": "text/plain"})
                return
            if fault == "throttle":
                self._answer(400, _THROTTLE, {"Content-Type": "text/xml"})
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(proxy.target + self.path, data=body or None, method=self.command)
            for key, value in headers.items():
                request.add_header(key, value)
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    self._answer(answer.status, answer.read(), dict(answer.headers))
            except urllib.error.HTTPError as error:
                self._answer(error.code, error.read(), dict(error.headers))

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _reset(self) -> None:
            """Close the connection with a TCP reset (SO_LINGER 0), as a dropped network does."""
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def serving(target: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target.rstrip("/"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
