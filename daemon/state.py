"""Small per-upstream state files (``<site>/upstreams/<name>.state.json``).

They make the sync state explicit and resumable without the catalog (as bandersnatch's
status file does): the last accepted commit of each upstream, and when it was accepted.
The catalog is the commit point of a sync; the state file and the ``accepted`` ref are
written right after it, and reconciled from the catalog at the start of every sync. A
``catalog rebuild`` starts from the state files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthmed.registry import atomic
from synthmed.registry.redact import redact_url
from synthmed.registry.stamps import utcnow
from synthmed.registry.settings import Settings, Upstream

STATE_FORMAT = "synthmed-upstream-state/1"


def state_path(settings: Settings, name: str) -> Path:
    return settings.upstreams_dir / f"{name}.state.json"


def read_state(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(settings, name).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None


def write_state(settings: Settings, upstream: Upstream, accepted_commit: str, accepted_at: str | None) -> None:
    # 0600 and fsync'd: a sync and a catalog rebuild resume from it
    atomic.write_json(state_path(settings, upstream.name), {
        "format": STATE_FORMAT,
        "upstream": upstream.name,
        "url": redact_url(upstream.url),  # for people reading the file; never a token
        "branch": upstream.branch,
        "subfolder": upstream.subfolder,
        "accepted_commit": accepted_commit,
        "accepted_at": accepted_at or utcnow(),
        "written_at": utcnow(),
    }, sort_keys=True, mode=0o600, fsync=True, parents=True)
