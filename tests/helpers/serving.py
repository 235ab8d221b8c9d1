"""``synthmed serve``'s application on a real socket (waitress, 127.0.0.1, a free port), in a thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import waitress

from synthmed.registry.settings import Settings
from synthmed.serve.app import make_app


@contextmanager
def serving(settings: Settings, token: str | None = None) -> Iterator[str]:
    """Serve ``settings``' site; yields its base URL (no trailing slash)."""
    server = waitress.create_server(make_app(settings, token=token), host="127.0.0.1", port=0, threads=4)
    port = server.getsockname()[1]  # type: ignore[union-attr]
    def run() -> None:
        try:
            server.run()
        except OSError:  # waitress has no stop(): closing its socket ends the loop with EBADF
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=5)
