"""Local HTTP servers for the tests, on 127.0.0.1 with a free port.

:class:`FaultServer` misbehaves on request: each route serves some bytes and may
truncate, stall, answer 5xx, redirect (in a loop), send more bytes than declared, serve tampered bytes, ignore ``Range``, or pause at an
offset until the test releases it; trickle (``send_chunk`` bytes every ``pace_s``), send an
endless body, send headers that lie, or answer a range request with another body. Every request's path and headers are recorded.
:func:`serve_folder` serves a folder as it is (``http.server``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

SEND_CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class Route:
    data: bytes
    #: answer 500 for the first N requests (-1: always)
    fail_times: int = 0
    status: int = 500
    #: close the connection after this many body bytes (for the first ``truncate_times`` requests; -1: always)
    truncate_at: int | None = None
    truncate_times: int = -1
    #: stop sending at this offset until ``release`` is set (or the server closes)
    stall_at: int | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    #: redirect to this URL (absolute or a path on this server)
    redirect_to: str | None = None
    #: bytes appended to the body
    extra: bytes = b""
    #: send Content-Length (False: close-delimited body)
    content_length: bool = True
    #: flip one byte in the middle (same size)
    tamper: bool = False
    #: honour Range requests
    ranges: bool = True
    #: seconds to pause between SEND_CHUNK-sized writes (server-side pacing)
    pace_s: float = 0.0
    #: bytes per write (with ``pace_s``: a trickle of ``send_chunk`` bytes every ``pace_s``)
    send_chunk: int = SEND_CHUNK
    #: send ``data`` over and over, without end (and without Content-Length)
    endless: bool = False
    #: headers sent as given, replacing the server's own (a lying Content-Length, a
    #: Content-Encoding, a Content-Range that does not match the request)
    headers: dict[str, str] = field(default_factory=dict)
    #: serve this body instead for requests with a Range header (answered 200 unless ``ranges``)
    range_body: bytes | None = None
    hits: int = 0

    def body(self) -> bytes:
        data = self.data
        if self.tamper and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        return data + self.extra


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        path = self.path.split("?", 1)[0]
        with srv.lock:
            srv.requests.append((path, dict(self.headers.items())))
            srv.raw_paths.append(self.path)
            route = srv.routes.get(path)
            if route is not None:
                route.hits += 1
                hit = route.hits
        self.close_connection = True
        if route is None:
            self._simple(404, b"not found")
            return
        if route.fail_times and (route.fail_times < 0 or hit <= route.fail_times):
            self._simple(route.status, b"server error")
            return
        if route.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", route.redirect_to)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        if route.endless:
            self._endless(route)
            return
        body = route.body()
        if route.range_body is not None and self.headers.get("Range"):
            body = route.range_body
        start = 0
        m = _RANGE.match(self.headers.get("Range", ""))
        if m and route.ranges:
            start = int(m.group(1))
            if start >= len(body):
                self._simple(416, b"range not satisfiable")
                return
            self.send_response(206)
            if "Content-Range" not in route.headers:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes" if route.ranges else "none")
        if route.content_length and "Content-Length" not in route.headers:
            self.send_header("Content-Length", str(len(body) - start))
        for k, v in route.headers.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        truncate = route.truncate_at is not None and (route.truncate_times < 0 or hit <= route.truncate_times)
        pos = start
        stalled = False
        try:
            while pos < len(body):
                end = min(len(body), pos + route.send_chunk)
                if truncate and route.truncate_at is not None:
                    if pos >= route.truncate_at:
                        break
                    end = min(end, route.truncate_at)
                if route.stall_at is not None and not stalled and pos <= route.stall_at < end:
                    stalled = True
                    end = route.stall_at
                    if end > pos:
                        self.wfile.write(body[pos:end])
                        self.wfile.flush()
                        pos = end
                    route.reached.set()
                    while not (route.release.is_set() or srv.closing.is_set()):
                        route.release.wait(0.05)
                    if srv.closing.is_set():
                        return
                    continue
                self.wfile.write(body[pos:end])
                pos = end
                if route.pace_s:
                    srv.closing.wait(route.pace_s)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _endless(self, route: Route) -> None:
        """A close-delimited body that never ends (until the client or the server closes)."""
        srv = self.server
        self.send_response(200)
        for k, v in route.headers.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        block = (route.data or b"\0") * max(1, SEND_CHUNK // max(1, len(route.data)))
        try:
            while not srv.closing.is_set():
                self.wfile.write(block)
                if route.pace_s:
                    srv.closing.wait(route.pace_s)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _simple(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]
    raw_paths: list[str]
    lock: threading.Lock
    closing: threading.Event


class FaultServer:
    """``with FaultServer() as srv: srv.add("/a.bin", data, truncate_at=10); srv.url("/a.bin")``"""

    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.httpd.requests = []
        self.httpd.raw_paths = []
        self.httpd.lock = threading.Lock()
        self.httpd.closing = threading.Event()
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes, **opts: Any) -> Route:
        route = Route(data=data, **opts)
        with self.httpd.lock:
            self.httpd.routes[path] = route
        return route

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        with self.httpd.lock:
            return list(self.httpd.requests)

    @property
    def raw_paths(self) -> list[str]:
        """Every request's target as sent, query string included."""
        with self.httpd.lock:
            return list(self.httpd.raw_paths)

    def headers_for(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` read-only over HTTP; yields the base URL (no trailing slash)."""
    handler = functools.partial(_QuietFiles, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
