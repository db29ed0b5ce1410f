"""A loopback HTTP proxy in front of a real server (moto, the git server) that makes faults happen for real: it
fails the next N requests (503, a reset connection, an AWS throttling answer, or `drop`: the request reaches the
server, and the answer is lost to a reset), delays them, or goes down, and counts what passed through. Engines and
git reach the server through it as they would through a flaky network.

A fault can be aimed: at requests that name an operation (`matching="ExecuteChangeSet"`), and only once a given
request has passed through (`after="ExecuteChangeSet"`: the polls that follow a change set's execution).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Fault = Literal["503", "reset", "throttle", "drop"]
_THROTTLE = (
    b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>'
    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"
)


@dataclass(frozen=True)
class _Armed:
    fault: Fault
    matching: str = ""
    after: str = ""


@dataclass(frozen=True)
class Seen:
    method: str
    #: The path, and the AWS query API's operation (`Action=`) when the body names one.
    what: str
    #: The fault it was answered with ("" when the server answered it).
    fault: str

    @property
    def reached_server(self) -> bool:
        return self.fault in ("", "drop")


@dataclass
class FaultProxy:
    target: str
    url: str = ""
    #: Faults still to inject, in order, each for one request.
    faults: list[_Armed] = field(default_factory=list)
    delay: float = 0.0
    down: bool = False
    #: Every request seen, in order.
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, fault: Fault, *, matching: str = "", after: str = "") -> None:
        """Answer the next `count` requests (those naming `matching`, once a request naming `after` has reached
        the server) with `fault`."""
        with self.lock:
            self.faults.extend([_Armed(fault, matching, after)] * count)

    def take(self, what: str) -> Fault | None:
        with self.lock:
            passed = [s.what for s in self.requests if s.reached_server]
            for index, armed in enumerate(self.faults):
                if armed.matching in what and (not armed.after or any(armed.after in p for p in passed)):
                    return self.faults.pop(index).fault
            return None

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.requests.append(seen)

    def count(self, what: str = "", *, reached_server: bool = False) -> int:
        """The requests naming `what` (only those the server saw, with `reached_server`)."""
        with self.lock:
            return sum(
                1 for s in self.requests if what in f"{s.method} {s.what}" and (s.reached_server or not reached_server)
            )

    def faulted(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.fault]


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            text = body.decode(errors="replace")
            action = text.split("Action=", 1)[1].split("&", 1)[0] if "Action=" in text else ""
            what = f"{self.path} {action}".strip()
            if proxy.down:
                proxy.record(Seen(self.command, what, "down"))
                self._reset()
                return
            fault = proxy.take(what)
            if fault != "drop":
                proxy.record(Seen(self.command, what, fault or ""))
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
                    status, payload, answer_headers = answer.status, answer.read(), dict(answer.headers)
            except urllib.error.HTTPError as error:
                status, payload, answer_headers = error.code, error.read(), dict(error.headers)
            if fault == "drop":
                # Recorded once the server has acted on it: a test waiting for the request sees its effect.
                proxy.record(Seen(self.command, what, "drop"))
                self._reset()
                return
            self._answer(status, payload, answer_headers)

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
