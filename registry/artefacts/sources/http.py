"""``https://`` and ``http://`` sources through the standard library's http.client.

Connect and per-read timeouts, retries with exponential backoff on 5xx/429 and dropped
connections (resuming with ``Range`` from the byte reached), manual redirects (at most
:data:`MAX_REDIRECTS`, loops refused, no credentials carried to another origin, no
https -> http downgrade except on loopback).
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import time
from typing import TYPE_CHECKING, Mapping
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ...errors import SourceError
from .base import Source, is_loopback, redact, source_error

if TYPE_CHECKING:  # http.client and ssl (about 20 ms to import) load when a request is made:
    import http.client  # the store is imported by commands that never download (`synthmed status`)

__all__ = ["HttpSource", "HttpStream", "is_loopback", "redact"]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
MAX_BACKOFF_S = 30.0
USER_AGENT = "synthmed-artefacts/1"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in from the scheme."""
    p = urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return (p.scheme.lower(), (p.hostname or "").lower(), port)


_origin = origin


class HttpSource(Source):
    """One URL. Credentials in the URL (``https://user:pass@host/...``) and headers added
    with :meth:`_add_origin_headers` (a bearer token) go only to the URL's own origin."""

    supports_range = True
    remote = True

    def _parse(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise source_error(self.uri, "not an http(s) URL with a host")
        auth: dict[str, str] = {}
        if parts.username is not None:
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth["Authorization"] = "Basic " + base64.b64encode(cred).decode()
            host = parts.hostname + (f":{parts.port}" if parts.port else "")
            uri = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
        self.url = uri
        self.host = parts.hostname
        self._auth = auth
        self._auth_origin = _origin(uri)
        s = self.settings.sources
        self.connect_timeout = float(s.http_connect_timeout_s)
        self.read_timeout = float(s.http_read_timeout_s)
        self.retries = max(0, int(s.http_retries))
        self.backoff = float(getattr(s, "http_backoff_s", 0.5))

    def _add_origin_headers(self, headers: Mapping[str, str]) -> None:
        """Send ``headers`` (e.g. a bearer token) with every request to the URL's own
        origin, never after a redirect to another one; credentials in the URL win."""
        self._auth = {**headers, **self._auth}

    def _remote_host(self) -> str | None:
        return self.host

    # -- one request, following redirects ------------------------------------------
    def _request(self, offset: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
        url = self.url
        seen: list[str] = []
        for _ in range(MAX_REDIRECTS + 1):
            seen.append(url)
            p = urlsplit(url)
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Connection": "close"}
            if _origin(url) == self._auth_origin:
                headers.update(self._auth)
            if offset:
                headers["Range"] = f"bytes={offset}-"
            conn = self._connect(p.scheme, p.hostname or "", p.port)
            target = p.path or "/"
            if p.query:
                target += "?" + p.query
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            if resp.status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location")
                resp.close()
                conn.close()
                if not loc:
                    raise source_error(self.uri, f"HTTP {resp.status} redirect without a Location header")
                nxt = urljoin(url, loc)
                np = urlsplit(nxt)
                if np.scheme not in ("http", "https"):
                    raise source_error(self.uri, f"redirect to a non-HTTP URL {redact(nxt)} refused")
                if p.scheme == "https" and np.scheme == "http" and not is_loopback(np.hostname):
                    raise source_error(self.uri, f"redirect from https to plain http ({redact(nxt)}) refused")
                if nxt in seen:
                    raise source_error(self.uri, f"redirect loop ({' -> '.join(redact(u) for u in seen + [nxt])})",
                                       hint="the server is misconfigured; the next source is tried")
                log.debug("%s: redirected to %s", self.uri, redact(nxt))
                url = nxt
                continue
            return conn, resp, url
        raise source_error(self.uri, f"more than {MAX_REDIRECTS} redirects", hint="the server is misconfigured")

    def _connect(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        import http.client
        import ssl

        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        if conn.sock is not None:
            conn.sock.settimeout(self.read_timeout)
        return conn

    def _sleep(self, attempt: int, why: str, at_least_s: float = 0.0) -> None:
        """Exponential backoff; a server's Retry-After is honoured up to MAX_BACKOFF_S."""
        delay = min(MAX_BACKOFF_S, max(at_least_s, self.backoff * (2 ** (attempt - 1))))
        log.info("%s: %s; retry %d/%d in %.2fs", self.uri, why, attempt, self.retries, delay)
        if delay > 0:
            time.sleep(delay)

    def _open(self, offset: int) -> "HttpStream":
        stream = HttpStream(self, offset)
        stream.start()
        return stream


class HttpStream:
    """The body of one download; reconnects with Range after a dropped connection."""

    def __init__(self, src: HttpSource, offset: int) -> None:
        self.src = src
        self.offset = offset
        self.pos = offset
        self.total: int | None = None
        self.attempt = 0
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._end: int | None = None  # byte position where this response's body ends

    def _fail(self, what: str, exc: BaseException | None = None) -> SourceError:
        err = source_error(self.src.uri, what, hint="the next source is tried; check the URL or retry later")
        if exc is not None:
            err.__cause__ = exc
        return err

    def start(self) -> None:
        """Open the first response (retrying), at ``self.offset``."""
        self._open_at(self.pos, first=True)

    def _open_at(self, pos: int, first: bool = False) -> None:
        import http.client
        import ssl

        last: str = ""
        while True:
            try:
                conn, resp, _url = self.src._request(pos)
            except SourceError:
                raise
            except ssl.SSLCertVerificationError as exc:
                raise source_error(self.src.uri, f"TLS certificate check failed: {exc.verify_message or exc}",
                                   hint="the server's certificate is not trusted here; check the URL, or add the "
                                        "site's CA to the system trust store") from exc
            except (OSError, http.client.HTTPException) as exc:
                last = f"connection failed: {exc.__class__.__name__}: {exc}"
                self._retry_or_raise(last, exc)
                continue
            status = resp.status
            if status in _RETRY_STATUS:
                after = resp.getheader("Retry-After") or ""
                resp.close()
                conn.close()
                last = f"HTTP {status} {resp.reason}"
                self._retry_or_raise(last, None, float(after) if after.isdigit() else 0.0)
                continue
            if status == 416 and pos:
                resp.close()
                conn.close()
                if first:
                    # the partial file may be complete or longer than the resource: restart
                    log.info("%s: range from %d not satisfiable; starting from 0", self.src.uri, pos)
                    pos = 0
                    self.offset = self.pos = 0
                    continue
                raise self._fail(f"HTTP 416 for a resume at byte {pos}")
            if status not in (200, 206):
                resp.close()
                conn.close()
                what = f"HTTP {status} {resp.reason}"
                if status == 404:
                    what += " (not found)"
                elif status in (401, 403):
                    what += " (access denied)"
                raise source_error(self.src.uri, what,
                                   hint="check the URL and any credentials; the next source is tried")
            clen = resp.getheader("Content-Length")
            length = int(clen) if clen and clen.isdigit() else None
            if status == 206:
                m = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
                if not m or int(m.group(1)) != pos:
                    resp.close()
                    conn.close()
                    raise self._fail(f"bad Content-Range {resp.getheader('Content-Range')!r} for a request from byte {pos}")
                start = pos
                if m.group(3) != "*":
                    total = int(m.group(3))
                    self.total = total
                self._end = start + length if length is not None else (self.total if self.total is not None else None)
            else:  # 200: whole resource
                if pos and not first:
                    resp.close()
                    conn.close()
                    raise self._fail(f"the server ignored the Range request when resuming at byte {pos}")
                if pos:
                    log.info("%s: server ignored Range; downloading from 0", self.src.uri)
                pos = 0
                self.offset = 0
                self.pos = 0
                self.total = length
                self._end = length
            self._conn, self._resp = conn, resp
            return

    def _retry_or_raise(self, why: str, exc: BaseException | None, at_least_s: float = 0.0) -> None:
        self.attempt += 1
        if self.attempt > self.src.retries:
            n = self.attempt
            raise self._fail(f"{why} (after {n} attempt{'s' if n != 1 else ''})", exc)
        self.src._sleep(self.attempt, why, at_least_s)

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
        if self._conn is not None:
            self._conn.close()
        self._resp = None
        self._conn = None

    def readinto(self, buf: memoryview) -> int:
        got = 0
        n = len(buf)
        while got < n:
            r = self._read(buf[got:], some=False)
            if not r:
                break
            got += r
        return got

    def readinto_some(self, buf: memoryview) -> int:
        """As soon as some bytes arrived (one receive), so the caller can check its limits
        between them; 0 at the end."""
        return self._read(buf, some=True) if len(buf) else 0

    def _read(self, buf: memoryview, some: bool) -> int:
        """Bytes into ``buf``: all of it (``some=False``) or what one receive brings;
        reconnects with Range after a drop; 0 at the end of the body."""
        import http.client

        while True:
            resp = self._resp
            if resp is None:
                return 0
            why = ""
            exc: BaseException | None = None
            try:
                r = resp.readinto1(buf) if some else resp.readinto(buf)
            except socket.timeout as e:
                r, why, exc = -1, f"read timed out after {self.src.read_timeout:g}s at byte {self.pos}", e
            except (OSError, http.client.HTTPException) as e:
                r, why, exc = -1, f"connection dropped at byte {self.pos}: {e.__class__.__name__}", e
            if r > 0:
                self.pos += r
                self.attempt = 0  # progress since the last failure: a later drop gets fresh retries
                return r
            if r == 0:
                if self._end is None or self.pos >= self._end:
                    self._drop()
                    return 0
                why = f"connection closed at byte {self.pos} of {self._end}"
            # dropped, truncated or stalled: resume with Range from the byte reached
            self._drop()
            self._retry_or_raise(why, exc)
            self._open_at(self.pos)

    def close(self) -> None:
        self._drop()
