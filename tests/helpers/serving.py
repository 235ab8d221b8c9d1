"""``synthmed serve``'s application on a real socket (waitress, 127.0.0.1, a free port), in a thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import waitress

from synthmed.registry.settings import Settings
from synthmed.serve.app import make_app


@contextmanager
def serving(settings: Settings, token: str | None = None, public_catalogue: bool = False) -> Iterator[str]:
    """Serve ``settings``' site; yields its base URL (no trailing slash)."""
    server = waitress.create_server(make_app(settings, token=token, public_catalogue=public_catalogue),
                                    host="127.0.0.1", port=0, threads=4)
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


def this_index() -> tuple[list[str], int, int]:
    """This repository's index/: the starter ids (the pinned models), the number of model ids
    and the number of distinct pinned, non-yanked blobs, the published datasets' included (so
    tests follow new starters and datasets)."""
    import json

    from . import REPO_ROOT

    ids: set[str] = set()
    starters: set[str] = set()
    blobs: set[str] = set()
    for f in (REPO_ROOT / "index" / "models").glob("*/*.json"):
        d = json.loads(f.read_text("utf-8"))
        ids.add(d["id"])
        sha = d["package"]["artefact"].get("sha256")
        if sha and d.get("status") != "yanked":
            starters.add(d["id"])
            blobs.add(sha)
    for f in (REPO_ROOT / "index" / "datasets").glob("*/*.json"):
        d = json.loads(f.read_text("utf-8"))
        if d.get("status") != "yanked":
            blobs.add(d["artefact"]["sha256"])
    return sorted(starters), len(ids), len(blobs)
