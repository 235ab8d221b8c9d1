"""``dvc:<git-repo-url>#<path>@<rev>`` sources, read with DVC's Python API.

DVC is only a transport here: it checks nothing, so tampered remote objects come back
silently and the store's own sha256 catches them. A site can point every DVC read at its
own remote (``[sources.dvc] remote_url`` / ``config`` in site.toml). DVC's temporary clones
are removed once the last open DVC stream in this process is closed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import Source, redact, source_error

log = logging.getLogger(__name__)

SITE_REMOTE = "synthmed-site"
_lock = threading.Lock()
_open_streams = 0


def parse_dvc_uri(uri: str) -> tuple[str, str, str | None]:
    """``dvc:URL#PATH@REV`` -> (url, path, rev); the rev is optional."""
    body = uri[len("dvc:"):]
    if "#" not in body:
        raise source_error(uri, "not a dvc: URI", hint="write dvc:<git-repo-url>#<path>@<rev>")
    url, rest = body.split("#", 1)
    rev: str | None = None
    if "@" in rest:
        rest, rev = rest.rsplit("@", 1)
        rev = rev or None
    if not url or not rest:
        raise source_error(uri, "a dvc: URI needs a repository URL and a path", hint="write dvc:<git-repo-url>#<path>@<rev>")
    return url, rest, rev


def _cleanup_clones() -> None:
    try:
        from dvc.repo.open_repo import clean_repos
    except ImportError:  # pragma: no cover - older DVC
        return
    try:
        clean_repos()
    except OSError as exc:  # pragma: no cover
        log.warning("could not remove DVC's temporary clones: %s", exc)


class DvcStream:
    def __init__(self, uri: str, cm: Any, fobj: Any) -> None:
        self.uri = uri
        self._cm = cm
        self._f = fobj
        self.offset = 0
        self.total: int | None = None
        self._closed = False

    def readinto(self, buf: memoryview) -> int:
        # DVC's and fsspec's errors are wrapped into SourceError by the base class's stream
        got = 0
        n = len(buf)
        while got < n:
            data = self._f.read(n - got)
            if not data:
                break
            k = len(data)
            buf[got:got + k] = data
            got += k
        return got

    def readinto_some(self, buf: memoryview) -> int:
        """One read of DVC's file object (the limits are checked between them)."""
        data = self._f.read(len(buf))
        if not data:
            return 0
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        global _open_streams
        if self._closed:
            return
        self._closed = True
        try:
            self._cm.__exit__(None, None, None)
        except Exception as exc:  # pragma: no cover
            log.debug("%s: closing DVC stream: %s", self.uri, exc)
        with _lock:
            _open_streams -= 1
            if _open_streams == 0:
                _cleanup_clones()


class DvcSource(Source):
    supports_range = False
    _offline_action = "cloning over the network"
    _offline_hint = "configure a site mirror, or turn offline mode off"
    _failure_hint = ("reading through DVC failed; check the DVC remote (site override: [sources.dvc] in "
                     "site.toml); the next source is tried")

    def _parse(self, uri: str) -> None:
        self.url, self.path, self.rev = parse_dvc_uri(uri)
        # judged by the repository URL, as before: a local path or file:// repository is read
        # offline (the DVC data remote it names is not judged; nor is an scp-like git@host:repo)
        self.remote = "://" in self.url and not self.url.startswith("file://")

    def _remote_host(self) -> str | None:
        return urlsplit(self.url).hostname

    def _local_paths(self) -> list[Path]:
        """A repository on this machine, and the file named in it, are local reads."""
        if self.url.startswith("file://"):
            repo = Path(unquote(urlsplit(self.url).path))
        elif "://" in self.url or self.url.startswith("git@") or ":" in self.url.split("/")[0]:
            return []
        else:
            repo = Path(self.url).expanduser()
        return [repo, repo / self.path]

    def _api_kwargs(self) -> dict[str, Any]:
        s = self.settings.sources
        kw: dict[str, Any] = {}
        cfg = dict(s.dvc_remote_config or {})
        if s.dvc_remote_url:
            kw["config"] = {"core": {"remote": SITE_REMOTE}, "remote": {SITE_REMOTE: {"url": s.dvc_remote_url, **cfg}}}
        elif cfg:
            kw["remote_config"] = cfg
        return kw

    def _open(self, offset: int) -> DvcStream:
        global _open_streams
        import dvc.api

        kw = self._api_kwargs()
        with _lock:
            _open_streams += 1
        try:
            cm = dvc.api.open(self.path, repo=self.url, rev=self.rev, mode="rb", **kw)
            fobj = cm.__enter__()
        except Exception as exc:
            with _lock:
                _open_streams -= 1
                if _open_streams == 0:
                    _cleanup_clones()
            what = f"{exc.__class__.__name__}: {exc}".strip()
            msg = redact(f"DVC could not open {self.path} in {self.url} at {self.rev or 'HEAD'}: {what}")
            raise source_error(self.uri, msg,
                               hint="check the repository URL, path and rev, and the DVC remote "
                                    "(a site may override it in site.toml [sources.dvc])") from exc
        return DvcStream(self.uri, cm, fobj)
