"""The base class every artefact source derives from, and the rules it applies once.

A source is only a transport: it hands out a byte stream, optionally from an offset.
Trust comes from the sha256 that :mod:`synthmed.registry.artefacts.store` computes itself.

Contract of :class:`Source` (the subclasses implement protected methods only):

- One constructor for every scheme: ``cls(uri, ctx, sha256)``. It parses the URI (a
  malformed one raises :class:`SourceError`) and does no I/O. ``uri`` is the URI without a
  password, safe for messages.
- :meth:`Source.open` applies the offline rule, then calls the subclass's ``_open``.
- Every failure of a source surfaces as :class:`SourceError` naming its URI: any other
  exception raised while opening, or while reading from the stream :meth:`Source.open`
  returns (``OSError`` such as EIO, ``http.client`` and library errors, ...), is wrapped
  into one, naming the byte offset reached. So a caller can tell the two sides apart: a
  ``SourceError`` means "this source failed, try the next one"; any other exception comes
  from the caller's own side (the store's disk) and stops the fetch. ``KeyboardInterrupt``
  and other ``BaseException``\\ s pass through unchanged.

Offline rule (``settings.offline``): a source whose bytes come from another machine
(``remote``) is refused with a :class:`SourceError` and a hint, unless the host it reaches
is a loopback address or ``localhost``, or the source is a ``mirror:`` (a site mirror is the
site's own copy and is used offline). Local sources (``file://``, ``index:``, folder
mirrors, ``dvc:`` with a local repository) are never refused.

Limits (``settings.sources``), applied by the stream :meth:`Source.open` returns, so every
scheme is bounded the same way; crossing one is a :class:`SourceError` naming the limit and
its setting (the next source is tried):

- ``download_deadline_s``: the whole attempt, from :meth:`Source.open` on;
- ``min_rate_bytes_per_s`` averaged over ``min_rate_window_s``: a source that trickles;
- ``max_unsized_bytes``: when the caller knows no size for the artefact (``open(offset,
  size=None)``), no more bytes than this are read, and a source declaring more is refused.

They are checked between the transport's reads, and a subclass's stream may offer
``readinto_some`` (return as soon as some bytes arrived) so that a trickle cannot keep one
read busy: a single read then waits at most the transport's own read timeout.

Local files (``_local_paths``: ``file://``, a folder ``mirror:``, a local ``dvc:``
repository) of a record from an upstream are read only under the folders the site names
for that upstream (``SourceContext.local_roots``, from ``file_roots`` in site.toml), after
following symbolic links; ``local_roots=None`` (the maintainer's own machine: ``index pin``,
``contribute``) allows any.

The scheme -> class table and :func:`source_for_uri` are in :mod:`synthmed.registry.artefacts.sources.table`.
"""

from __future__ import annotations

import abc
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from ...errors import SourceError
from ...redact import redact_url as redact  # the one redaction (registry/redact.py)
from ...settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """What resolvers need besides the URI."""

    settings: Settings
    #: git repository holding the index (for ``index:`` sources)
    index_repo: Path | None = None
    #: commit to read ``index:`` files at (``None``: HEAD)
    index_commit: str | None = None
    #: index folder inside that repository ("" or e.g. "index")
    index_subfolder: str = ""
    #: read ``index:`` files from this working-tree folder instead of git (``index pin``,
    #: where the artefact may not be committed yet)
    index_dir: Path | None = None
    #: folders local sources may read, symlinks resolved (``None``: any; ``()``: none), and
    #: the upstream they are for (for messages); see :meth:`Settings.file_roots`
    local_roots: tuple[Path, ...] | None = None
    upstream: str | None = None


class SourceStream(Protocol):
    """An open byte stream from a source."""

    @property
    def offset(self) -> int:
        """Where the stream starts in the artefact (0 when a requested offset was not honoured)."""
        ...

    @property
    def total(self) -> int | None:
        """The artefact's full size as the source declares it, when it does."""
        ...

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (fully, unless the stream ends); 0 at the end of the stream."""
        ...

    def close(self) -> None: ...


class FileStream:
    """A :class:`SourceStream` over a local binary file object (unbuffered: one
    ``readinto`` of it is one read system call)."""

    def __init__(self, fh: "_RawFile", offset: int, total: int | None) -> None:
        self._fh = fh
        self.offset = offset
        self.total = total

    def readinto(self, buf: memoryview) -> int:
        got = 0
        n = len(buf)
        while got < n:
            r = self._fh.readinto(buf[got:])
            if not r:
                break
            got += r
        return got

    def readinto_some(self, buf: memoryview) -> int:
        return self._fh.readinto(buf) or 0

    def close(self) -> None:
        self._fh.close()


class _RawFile(Protocol):
    def readinto(self, buf: memoryview) -> int | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StreamLimits:
    """The bounds of one source attempt (see the module docstring)."""

    #: time.monotonic() at which the attempt must be over
    deadline: float
    deadline_s: float
    min_rate: float
    window_s: float
    #: most artefact bytes (``None``: no cap, the caller bounds them by the declared size)
    max_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, size: int | None, started: float) -> "StreamLimits":
        s = settings.sources
        return cls(deadline=started + float(s.download_deadline_s), deadline_s=float(s.download_deadline_s),
                   min_rate=float(s.min_rate_bytes_per_s), window_s=float(s.min_rate_window_s),
                   max_bytes=int(s.max_unsized_bytes) if size is None else None)


class GuardedStream:
    """What :meth:`Source.open` returns: the subclass's stream, with every exception but
    :class:`SourceError` raised while reading turned into a :class:`SourceError` that names
    the source and the byte offset reached, and the limits of :class:`StreamLimits`
    enforced between reads. Closing never raises (the bytes are verified by their hash; a
    failed close only costs a log line)."""

    def __init__(self, uri: str, inner: SourceStream, hint: str, limits: StreamLimits | None = None) -> None:
        self.uri = uri
        self._inner = inner
        self._hint = hint
        #: the artefact offset of the next byte to be read
        self.position = inner.offset
        self._limits = limits
        self._window_t = time.monotonic()
        self._window_pos = self.position
        self._some = getattr(inner, "readinto_some", None)
        if limits is not None and limits.max_bytes is not None and inner.total is not None \
                and inner.total > limits.max_bytes:
            self.close()
            raise source_error(uri, f"the source declares {inner.total} bytes, more than the {limits.max_bytes} "
                                    "allowed for an artefact whose record declares no size (sources.max_unsized_bytes)",
                               hint="pin the record's package.artefact.size, or raise sources.max_unsized_bytes "
                                    "in site.toml; the next source is tried")

    @property
    def offset(self) -> int:
        return self._inner.offset

    @property
    def total(self) -> int | None:
        return self._inner.total

    def _check(self) -> None:
        """Raise :class:`SourceError` when the deadline passed or the rate fell too low."""
        lim = self._limits
        if lim is None:
            return
        now = time.monotonic()
        if now > lim.deadline:
            raise source_error(self.uri, f"the download took longer than {lim.deadline_s:g}s (at byte "
                                         f"{self.position}; sources.download_deadline_s)",
                               hint="the source is too slow; the next source is tried (raise "
                                    "sources.download_deadline_s in site.toml for a slow link)")
        span = now - self._window_t
        if lim.min_rate > 0 and span >= lim.window_s:
            rate = (self.position - self._window_pos) / span
            if rate < lim.min_rate:
                raise source_error(self.uri, f"the source sent {rate:.0f} bytes/s over the last {span:.0f}s, below "
                                             f"the minimum of {lim.min_rate:g} (at byte {self.position}; "
                                             "sources.min_rate_bytes_per_s over sources.min_rate_window_s)",
                                   hint="the source trickles; the next source is tried")
            self._window_t, self._window_pos = now, self.position

    def _read(self, buf: memoryview) -> int:
        """One read of the inner stream (returning early where it can), limits checked."""
        lim = self._limits
        self._check()
        if lim is not None and lim.max_bytes is not None:
            room = lim.max_bytes + 1 - self.position  # one byte more tells "too long" from "exactly at the cap"
            if len(buf) > room:
                buf = buf[:max(room, 0)]
        try:
            n = self._some(buf) if self._some is not None else self._inner.readinto(buf)
        except SourceError:
            raise
        except Exception as exc:
            raise source_error(self.uri, f"reading failed at byte {self.position}: {exc.__class__.__name__}: {exc}",
                               hint=self._hint) from exc
        self.position += n
        if lim is not None and lim.max_bytes is not None and self.position > lim.max_bytes:
            raise source_error(self.uri, f"the source sends more than {lim.max_bytes} bytes, the most allowed for an "
                                         "artefact whose record declares no size (sources.max_unsized_bytes)",
                               hint="pin the record's package.artefact.size, or raise sources.max_unsized_bytes "
                                    "in site.toml; the next source is tried")
        if n:
            self._check()
        return n

    def readinto_some(self, buf: memoryview) -> int:
        """Some bytes (at least one, 0 at the end), as soon as the source has them."""
        if not len(buf):
            return 0
        return self._read(buf)

    def readinto(self, buf: memoryview) -> int:
        got = 0
        n = len(buf)
        while got < n:
            r = self._read(buf[got:])
            if not r:
                break
            got += r
        return got

    def close(self) -> None:
        try:
            self._inner.close()
        except Exception as exc:
            log.warning("%s: closing the stream failed: %s: %s", self.uri, exc.__class__.__name__, exc)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Source(abc.ABC):
    """One resolved source URI; see the module docstring for the contract.

    Subclasses implement :meth:`_parse` and :meth:`_open`, and for remote sources
    :meth:`_remote_host`; they set ``supports_range`` and ``remote`` (as class attributes,
    or in ``_parse`` when the URI decides).
    """

    #: True when :meth:`open` honours an offset (the store then resumes partial files)
    supports_range: bool = False
    #: True when bytes come from another machine (the offline rule applies)
    remote: bool = False
    #: sources used offline although remote (``mirror:``: the site's own copies)
    _offline_exempt: ClassVar[bool] = False
    #: what an offline refusal says the source would have done, and its hint
    _offline_action: ClassVar[str] = "fetching from the network"
    _offline_hint: ClassVar[str] = "configure a site mirror (sources.mirrors), or turn offline mode off"
    #: the hint of a failure wrapped by :meth:`open` or by the stream
    _failure_hint: ClassVar[str] = "the source failed while being read; the next source is tried"

    def __init__(self, uri: str, ctx: SourceContext, sha256: str | None = None) -> None:
        #: the URI without a password (safe for messages and logs)
        self.uri = redact(uri)
        self.ctx = ctx
        self.settings = ctx.settings
        #: the pinned sha256 (``None`` before pinning); ``mirror:`` needs it
        self.sha256 = sha256
        self._parse(uri)

    @abc.abstractmethod
    def _parse(self, uri: str) -> None:
        """Parse ``uri`` (as written, credentials included); raise :class:`SourceError` when
        it is malformed. No I/O."""

    @abc.abstractmethod
    def _open(self, offset: int) -> SourceStream:
        """Open the stream at ``offset`` (or at 0 where ranges are not supported)."""

    def _remote_host(self) -> str | None:
        """The host a remote source reaches (a loopback one is allowed offline)."""
        return None

    def _local_paths(self) -> list[Path]:
        """Files or folders on this machine the source reads (checked against the
        context's ``local_roots``)."""
        return []

    def _check_local(self) -> None:
        """Raise :class:`SourceError` when a local path leaves the folders allowed for
        the record's upstream (links and ``..`` resolved first)."""
        roots = self.ctx.local_roots
        if roots is None:
            return
        for p in self._local_paths():
            self.check_local_path(p)

    def check_local_path(self, path: Path | str) -> Path:
        """``path`` with its links resolved, when it lies under an allowed folder."""
        real = Path(os.path.realpath(path))
        roots = self.ctx.local_roots
        if roots is None or any(real == r or real.is_relative_to(r) for r in roots):
            return real
        who = f"upstream {self.ctx.upstream!r}" if self.ctx.upstream else "this record's upstream"
        where = f"only under {', '.join(str(r) for r in roots)}" if roots else "from no local folder"
        shown = f"{path}" + (f" (-> {real})" if str(real) != str(path) else "")
        raise source_error(self.uri, f"refused to read the local path {shown}: records of {who} may read local "
                                     f"files {where} (file_roots of that upstream in site.toml)",
                           hint="a site admin may list the folder in that upstream's file_roots; the next "
                                "source is tried")

    def _check_offline(self) -> None:
        """Raise :class:`SourceError` when the offline rule refuses this source."""
        if not (self.remote and self.settings.offline) or self._offline_exempt:
            return
        if is_loopback(self._remote_host()):
            return
        raise source_error(self.uri, f"the site is offline (settings: offline = true); not {self._offline_action}",
                           hint=self._offline_hint)

    def open(self, offset: int = 0, size: int | None = None) -> GuardedStream:
        """A stream from ``offset`` (check its ``offset``: a source may start from 0).
        ``size``: the artefact's size when the record declares one; without it, at most
        ``sources.max_unsized_bytes`` are read."""
        started = time.monotonic()
        self._check_offline()
        self._check_local()
        try:
            stream = self._open(offset)
        except SourceError:
            raise
        except Exception as exc:
            raise source_error(self.uri, f"opening failed{f' at byte {offset}' if offset else ''}: "
                                         f"{exc.__class__.__name__}: {exc}", hint=self._failure_hint) from exc
        limits = StreamLimits.from_settings(self.settings, size, started)
        guarded = GuardedStream(self.uri, stream, self._failure_hint, limits)
        try:
            guarded._check()  # opening (retries, redirects, a look-up) counts towards the deadline
        except SourceError:
            guarded.close()
            raise
        return guarded


def source_error(uri: str, what: str, hint: str | None = None) -> SourceError:
    return SourceError(f"{uri}: {what}", hint=hint, source=uri)


def scheme_of(uri: str) -> str:
    """The URI's scheme, lower-cased ("" when there is none)."""
    return uri.split(":", 1)[0].lower() if ":" in uri else ""


def candidate_uris(sources: list[str], settings: Settings, sha256: str | None) -> list[str]:
    """Site-configured mirrors first (when the sha256 is known), then the record's sources."""
    out: list[str] = []
    if sha256:
        for m in settings.sources.mirrors:
            out.append(m if m.startswith("mirror:") else f"mirror:{m}")
    for s in sources:
        if s.strip() == "mirror:" and out and sha256:
            continue  # "any site mirror": the configured ones are already first
        if s not in out:
            out.append(s)
    return out


def last_path_part(uri: str) -> str:
    """The file name a URI points at: ``zenodo:1/a.pt`` -> ``a.pt``,
    ``dvc:url#models/w.pth@v1`` -> ``w.pth``, ``https://h/x/y.bin?q`` -> ``y.bin``."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if uri.startswith("dvc:") and "#" in rest:
        rest = rest.split("#", 1)[1]
        if "@" in rest:
            rest = rest.rsplit("@", 1)[0]
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    name = rest.rstrip("/").rsplit("/", 1)[-1]
    return name
