"""The connection limits of ``synthmed serve`` (plain data: the command line reads the defaults
without importing the server; :mod:`synthmed.serve.server` applies them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """``--max-client-connections``, ``--idle-timeout`` and waitress's ``connection_limit``."""

    #: open connections per client address (waitress has no such setting: serve/server.py)
    per_client: int = 16
    #: seconds a connection may stay idle (waitress ``channel_timeout``)
    idle_timeout_s: int = 30
    #: open connections in all (waitress ``connection_limit``)
    connection_limit: int = 100
