"""Sites for the tests (all under tmp_path): site.toml, settings with short HTTP timeouts,
sync, a site whose catalog already holds given records, and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from synthmed.daemon.sync import SyncResult, sync_all
from synthmed.registry.catalog import Catalog
from synthmed.registry.record_paths import record_relpath
from synthmed.registry.settings import Settings, Upstream, load_settings

from . import REPO_ROOT
from .records import to_record


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_site(home: Path, upstreams: Sequence[dict[str, Any]], **sections: dict[str, Any]) -> Settings:
    """Write a site.toml (``sections``: site=, mirror=, schedules=, sources=) and load it."""
    home.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for u in upstreams:
        lines.append("[[upstreams]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in u.items()]
        lines.append("")
    (home / "site.toml").write_text("\n".join(lines))
    return load_settings(home, {}, environ={})


def fast_settings(home: Path, **sources: Any) -> Settings:
    """Settings with short HTTP timeouts and backoffs, for tests."""
    s = load_settings(home, environ={})
    opts: dict[str, Any] = dict(http_connect_timeout_s=2.0, http_read_timeout_s=0.5, http_retries=1,
                                http_backoff_s=0.01)
    opts.update(sources)
    return replace(s, sources=replace(s.sources, **opts))


def with_file_roots(settings: Settings, *roots: Path, upstream: str = "public") -> Settings:
    """``settings`` with ``upstream`` configured (added as a network upstream if missing) so
    that its records' file:// sources may read under ``roots``."""
    ups = [u for u in settings.upstreams if u.name != upstream]
    old = next((u for u in settings.upstreams if u.name == upstream), None)
    base = old or Upstream(name=upstream, url="https://index.invalid/index.git")
    ups.append(replace(base, file_roots=tuple(str(r) for r in roots)))
    return replace(settings, upstreams=tuple(ups))


def sync(settings: Settings, **kw: Any) -> list[SyncResult]:
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        return sync_all(settings, cat, **kw)


def catalog(settings: Settings) -> Catalog:
    return Catalog.open(settings.catalog_path, readonly=True)


def make_site_home(home: Path, records: list[Mapping[str, Any]], upstream: str = "public") -> Path:
    """A site folder with a real catalog holding ``records`` (as a sync would leave it).
    Packages are not mirrored: the SDK fetches them on demand from their file:// sources."""
    home.mkdir(parents=True, exist_ok=True)
    # the upstream may read the records' file:// artefacts (their folders are its file_roots)
    roots = sorted({str(Path(unquote(urlsplit(u).path)).parent) for d in records
                    for u in d.get("package", {}).get("artefact", {}).get("sources", []) if u.startswith("file://")})
    if roots and not (home / "site.toml").exists():
        write_site(home, [{"name": upstream, "url": str(home / "no-index"), "file_roots": roots}])
    cat = Catalog.open(home / "catalog.db", readonly=False)
    try:
        cat.federation.put_upstream(upstream, url=str(home / "no-index"), branch="main", priority=100)
        for data in records:
            rel = record_relpath(data["id"], data["version"])
            cat.models.upsert_record(upstream, rel, to_record(data, rel), "0" * 40)
        cat.models.refresh_latest(upstream, [d["id"] for d in records])
    finally:
        cat.close()
    return home


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SYNTHMED_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
    env.update(extra)
    return env


def run_cli(args: Sequence[str], timeout: float = 120, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``python -m synthmed.cli ARGS`` in a subprocess (run from the repository root)."""
    return subprocess.run([sys.executable, "-m", "synthmed.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=str(REPO_ROOT), **popen)
