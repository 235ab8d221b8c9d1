"""The web server under ``synthmed serve``: waitress, with the limits that keep one peer from
exhausting the site, and a graceful stop.

waitress's own settings where it has them (docs/sites.md lists them):

- ``max_request_body_size``: a request announcing more than :data:`MAX_BODY` (16 MiB, the
  limit of a git upload-pack request) is refused with 413 from its headers, before any of
  its body is read or spooled; a chunked body is cut at the same size.
- ``inbuf_overflow``: a body up to that size is held in memory, beyond it (up to the 16 MiB
  limit) spooled to a temporary file.
- ``channel_timeout`` / ``cleanup_interval``: a connection idle that long is closed.
- ``connection_limit``: the most open connections in all.

waitress has no limit per client, so :class:`Server` adds one: a client (an IP address)
holding :attr:`ServeLimits.per_client` connections gets ``503`` for the next one and is
closed. SIGTERM stops accepting, lets the requests in flight finish (at most
:data:`GRACE_S` seconds), closes idle connections and returns; the command exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from .downstream import MAX_REQUEST
from .limits import ServeLimits

log = logging.getLogger(__name__)

#: the largest request body served (a git upload-pack request); waitress refuses >= its setting
MAX_BODY = MAX_REQUEST
#: how long SIGTERM waits for the requests in flight
GRACE_S = 60.0


def waitress_settings(limits: ServeLimits) -> dict[str, Any]:
    """waitress's adjustments for ``limits`` (see the module's docstring)."""
    return {
        "max_request_body_size": MAX_BODY + 1,  # waitress refuses a length >= this one
        "inbuf_overflow": 1 << 20,
        "channel_timeout": limits.idle_timeout_s,
        "cleanup_interval": max(1, min(10, limits.idle_timeout_s // 2)),
        "connection_limit": limits.connection_limit,
        "ident": "synthmed",
    }


def _refusal_body() -> bytes:
    body = b"too many connections from this client address\n"
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _client(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, (tuple, list)) and addr else str(addr)


class Server:
    """waitress over ``app`` on ``host:port`` with :class:`ServeLimits`; :meth:`run` until
    :meth:`stop` (SIGTERM), then finish what is in flight."""

    def __init__(self, app: Callable[..., Any], host: str, port: int, *, threads: int = 4,
                 limits: ServeLimits = ServeLimits()) -> None:
        self.limits = limits
        self.map: dict[int, Any] = {}
        self.waitress = waitress.create_server(app, map=self.map, host=host, port=port, threads=threads,
                                               **waitress_settings(limits))
        self._stop = threading.Event()
        for listener in self._listeners():
            listener.channel_class = self._channel  # type: ignore[assignment]

    def getsockname(self) -> tuple[str, int]:
        host, port = self._listeners()[0].getsockname()[:2]
        return str(host), int(port)

    def _listeners(self) -> list[BaseWSGIServer]:
        return [d for d in self.map.values() if isinstance(d, BaseWSGIServer)]

    def _channels(self) -> list[HTTPChannel]:
        return [d for d in list(self.map.values()) if isinstance(d, HTTPChannel)]

    def _channel(self, server: Any, conn: Any, addr: Any, adj: Any, map: Any = None) -> HTTPChannel | None:
        """waitress's ``channel_class``: a new connection, unless its client holds too many."""
        who = _client(addr)
        held = sum(1 for ch in self._channels() if _client(ch.addr) == who)
        if held >= self.limits.per_client:
            log.warning("serve: %s holds %d connections (the limit per client): refused", who, held)
            try:
                conn.send(_refusal_body())
            except OSError:
                pass
            conn.close()
            return None
        return HTTPChannel(server, conn, addr, adj, map=map)

    # -- running and stopping -----------------------------------------------------------------

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Ask :meth:`run` to stop (safe in a signal handler)."""
        self._stop.set()

    def install_sigterm(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)

    def run(self) -> None:
        adj = self.waitress.adj
        while not self._stop.is_set() and self.map:
            wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=self.map, use_poll=adj.asyncore_use_poll,
                           count=1)
        if self._stop.is_set():
            self._drain(GRACE_S)
        self.close()

    def _busy(self) -> list[HTTPChannel]:
        """Connections with a request in flight (being received, run, or its answer being sent);
        the idle ones are told to close."""
        busy = []
        for ch in self._channels():
            if ch.requests or ch.request is not None or ch.total_outbufs_len:
                busy.append(ch)
            else:
                ch.will_close = True
        return busy

    def _drain(self, grace_s: float) -> None:
        for listener in self._listeners():  # no new connections (the trigger stays: it wakes the loop)
            listener.accepting = False
            wasyncore.dispatcher.close(listener)
        busy = self._busy()
        log.info("serve: SIGTERM: no longer accepting; finishing %d request(s) in flight", len(busy))
        deadline = time.monotonic() + grace_s
        while busy and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.2, map=self.map, use_poll=self.waitress.adj.asyncore_use_poll, count=1)
            busy = self._busy()
        if busy:
            log.warning("serve: %d request(s) still in flight after %g s: closing them", len(busy), grace_s)
        log.info("serve: stopped")

    def close(self) -> None:
        self.waitress.task_dispatcher.shutdown()
        wasyncore.close_all(self.map)
