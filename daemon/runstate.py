"""What the running daemon is doing, for ``synthmed status`` and the status page: ``<site>/daemon.json``.

The daemon rewrites the file (atomically) when it starts, when a job starts or ends, and
when it reloads ``site.toml``: its PID, the running job and since when, the next run of
each job, and the last reload and why it was refused. It is outside the catalog (the
catalog is derived data; this is the process's own state). A reader trusts it only while
the PID in it still holds the site lock (``site.lock`` names the holder), so a file left
by a killed daemon reads as "not running".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synthmed.registry import atomic
from synthmed.registry.settings import Settings

FILE = "daemon.json"
FORMAT = "synthmed-daemon-state/1"


def path(settings: Settings) -> Path:
    return settings.home / FILE


def write(settings: Settings, state: dict[str, Any]) -> None:
    doc = {"format": FORMAT, **state}
    atomic.write_json(path(settings), doc, default=str, mode=0o644)


def remove(settings: Settings) -> None:
    path(settings).unlink(missing_ok=True)


def _lock_holder_pid(settings: Settings) -> int | None:
    try:
        first = (settings.home / "site.lock").read_text().split()
    except OSError:
        return None
    return int(first[0]) if first and first[0].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read(settings: Settings) -> dict[str, Any]:
    """The daemon's state, with ``running``: whether that daemon is alive and holds the lock."""
    try:
        doc: dict[str, Any] = json.loads(path(settings).read_text("utf-8"))
    except (OSError, ValueError):
        return {"running": False}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return {"running": False}
    pid = doc.get("pid")
    running = isinstance(pid, int) and _alive(pid) and _lock_holder_pid(settings) == pid
    return {**doc, "running": running}
