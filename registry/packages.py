"""The one boundary between a catalog entry and a package that may run.

:func:`prepare` is the only code that turns a catalog entry into a :class:`VerifiedPackage`:
it applies the site's policies (yanked, pin, ``allow_code``, offline), builds the source
context, fetches the blob into the store (verified against the pinned sha256), unpacks it
and re-checks the unpacked tree against its manifest. :func:`prepare_archive` does the same
for a package archive that is not in any site yet (a contribution being tested).
:class:`~synthmed.registry.runner.Runner` accepts nothing but a ``VerifiedPackage``, so a
package reaches model code only through here.

The steps, in order, each one once::

    policy (yanked -> pin -> allow_code)      refused: RecordYanked / Unverified
    unpacked packages/<sha256>/ matches its manifest?  yes -> done (source "packages")
    blob in the store and hashes to its name?          no  -> fetch from the sources
        (offline: a run never fetches; the daemon's mirror job fetches from local
         sources and site mirrors only, as the sources decide)
    size as the record declares?               no  -> SizeMismatch (the record is wrong)
    unpack (safe-archive rules, manifest written) -> VerifiedPackage

A blob found corrupt when opened is quarantined and fetched again once. A package folder
that no longer matches its manifest is removed and unpacked again from its verified blob;
it is never run.

Purposes: ``"run"`` (the SDK, the CLI, model tests) needs ``allow_code``; ``"mirror"`` (the
daemon's mirror and scrub jobs) fetches and unpacks packages of every selected upstream,
and marks the result ``may_run=False`` where the site does not run that upstream's code,
which the runner refuses.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from .catalog import Catalog, CatalogEntry
from .artefacts.copy_pipeline import ByteProgress
from .errors import (
    ArtefactNotFound,
    BlobCorrupt,
    HashMismatch,
    RecordYanked,
    CodeNotAllowed,
    NotPinned,
    SizeMismatch,
)
from .artefacts.archives import GZIP, OCTET
from .formats import PackageFormat, format_for
from .hashing import hash_path
from .records import Record
from .settings import Settings
from .artefacts.sources.base import SourceContext, last_path_part
from .artefacts.store import FetchResult, Store
from .artefacts.packages_folder import PackagesFolder

log = logging.getLogger(__name__)

Purpose = Literal["run", "mirror"]

#: only this module makes VerifiedPackage objects (see VerifiedPackage.__post_init__)
_MINT = object()


@dataclass(frozen=True)
class VerifiedPackage:
    """A package whose bytes were verified against the record's pin, unpacked, and whose
    unpacked tree matched its manifest when :func:`prepare` returned it.

    Made only by :func:`prepare` and :func:`prepare_archive`; constructing one elsewhere
    raises ``TypeError``. It pickles (DataLoader workers open their own runner from it).
    """

    record: Record
    upstream: str | None
    sha256: str
    folder: Path
    #: ``{relative path: [size, sha256]}`` of every file of the unpacked package
    manifest: Mapping[str, Any]
    #: the source URI that served the blob; "store" when it was already in the store,
    #: "packages" when the unpacked folder was already there, "file:..." for an archive
    source: str
    #: False when the site does not run code of this upstream (prepared for mirroring only)
    may_run: bool = True
    #: the packages it runs with, by stage name (a pipeline prepared for running), else empty
    stages: Mapping[str, "VerifiedPackage"] = field(default_factory=dict)
    _mint: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("a VerifiedPackage is made only by synthmed.registry.packages.prepare "
                            "(or prepare_archive): it stands for bytes that were verified")

    def __reduce__(self) -> Any:  # pickling keeps the fields; unpickling re-mints
        return (_unpickle, (self.record.data, self.record.path, self.upstream, self.sha256, str(self.folder),
                            dict(self.manifest), self.source, self.may_run, dict(self.stages)))

    @property
    def ref(self) -> str:
        """``upstream/id@version`` (or ``id@version`` for a package from no upstream)."""
        return f"{self.upstream}/{self.record.ref}" if self.upstream else self.record.ref

    @property
    def format(self) -> PackageFormat:
        """The adapter of its package format: loading, stages, seed chunks, what a run records."""
        return format_for(self.record)


def _unpickle(data: Mapping[str, Any], path: str, upstream: str | None, sha256: str, folder: str,
              manifest: Mapping[str, Any], source: str, may_run: bool,
              stages: Mapping[str, VerifiedPackage]) -> VerifiedPackage:
    return VerifiedPackage(Record(data=data, path=path), upstream, sha256, Path(folder), manifest, source,
                           may_run, stages, _MINT)


# --- policy ---------------------------------------------------------------------------


def require_pin(record: Record, ref: str | None = None) -> str:
    """The record's pinned sha256; RecordYanked for a yanked record, Unverified for one
    with no pin. The one place both rules live."""
    ref = ref or record.ref
    if record.status == "yanked":
        raise RecordYanked(f"{ref} is yanked: {record.get('status_reason', 'no reason given')}",
                           hint="pick another version (`synthmed show ID` lists them)", model=ref)
    sha = record.sha256
    if not sha:
        raise NotPinned(
            f"{ref} ({record.path}) is unverified: no pinned sha256 ($.package.artefact.sha256), "
            "so synthmed never executes it; it stays searchable",
            hint=f"an index maintainer pins it with `synthmed index pin {record.ref}`, then `synthmed sync`",
            model=ref, reason="unverified")
    return sha


def code_allowed(settings: Settings, upstream: str | None) -> bool:
    """Whether the site runs code from ``upstream`` (site.toml ``allow_code``)."""
    return all(u.allow_code for u in settings.upstreams if u.name == upstream)


def runnable_upstreams(settings: Settings) -> list[str]:
    """The upstreams whose packages this site runs (``allow_code``)."""
    return [u.name for u in settings.upstreams if code_allowed(settings, u.name)]


def _refuse_code(settings: Settings, ref: str, upstream: str | None) -> CodeNotAllowed:
    return CodeNotAllowed(
        f"{ref}: this site does not run code from upstream {upstream!r} "
        f"(allow_code = false in {settings.site_file})",
        hint="a site admin may allow it in site.toml; until then the model is searchable (and mirrored) only",
        model=ref, reason="allow_code")


def package_filename(record: Record) -> str:
    """For a single-file (``application/octet-stream``) artefact: its file name, the last
    path part of the first source that names one."""
    for uri in record.sources:
        if uri.startswith("mirror:"):
            continue
        name = last_path_part(uri)
        if name:
            return name
    return "artefact.bin"


def source_context(settings: Settings, upstream: str | None, index_repo: Path | None, index_commit: str | None,
                   index_subfolder: str) -> SourceContext:
    """The one context every pinned artefact of an index (a package, an extractor's
    weights) is fetched with: local sources (file://, folder mirrors, local DVC
    repositories) of an upstream's record read only under that upstream's file_roots
    (site.toml); the offline rule is the sources' own (:meth:`Source.open`)."""
    return SourceContext(settings=settings, index_repo=index_repo, index_commit=index_commit,
                         index_subfolder=index_subfolder, local_roots=settings.file_roots(upstream),
                         upstream=upstream)


# --- the boundary ---------------------------------------------------------------------


def prepare(entry: CatalogEntry, settings: Settings, *, purpose: Purpose = "run",
            progress: ByteProgress | None = None) -> VerifiedPackage:
    """The verified, unpacked package of ``entry`` (see the module docstring for the steps).

    ``progress``, if given, is called with (bytes so far, declared size or None) while the
    package is downloaded (not when it is already in the store).

    Raises RecordYanked, Unverified (no pin, or ``allow_code`` false for ``purpose="run"``),
    ArtefactNotFound (no source delivered the pinned bytes; offline and not mirrored),
    HashMismatch/BlobCorrupt (with what to do), SizeMismatch (the record is wrong).
    """
    record, ref = entry.record, entry.qualified_ref
    sha = require_pin(record, ref)
    may_run = code_allowed(settings, entry.upstream)
    if purpose == "run" and not may_run:
        raise _refuse_code(settings, ref, entry.upstream)
    ctx = source_context(settings, entry.upstream, entry.index_repo, entry.index_commit, entry.index_subfolder)
    folder, manifest, source = _materialise(record, ref, sha, settings, ctx, fetch_allowed=not (
        purpose == "run" and settings.offline), progress=progress)
    package = VerifiedPackage(record, entry.upstream, sha, folder, manifest, source, may_run, _mint=_MINT)
    return _with_stages(package, settings) if purpose == "run" else package


def _with_stages(package: VerifiedPackage, settings: Settings) -> VerifiedPackage:
    """``package`` with the packages it runs with (a pipeline's stages: its format's
    :meth:`~synthmed.registry.formats.PackageFormat.prepare_stages`), each prepared for
    running by :func:`prepare`. The catalog is opened only when a stage is resolved."""
    with contextlib.ExitStack() as stack:
        catalogs: list[Catalog] = []

        def resolve(ref: str) -> CatalogEntry:
            if not catalogs:
                catalogs.append(stack.enter_context(Catalog.open(settings.catalog_path, readonly=True)))
            return catalogs[0].models.resolve(ref)

        stages = package.format.prepare_stages(package, resolve, lambda entry: prepare(entry, settings))
    return replace(package, stages=stages) if stages else package


def prepare_archive(record: Record, archive: Path, packages_dir: Path, *,
                    upstream: str | None = None) -> VerifiedPackage:
    """A package archive that is in no site yet (``contribute`` tests it before upload):
    hash it, compare with the record's pin, unpack it into ``packages_dir``. ``upstream``
    names the index the record comes from, if any (it only labels the package)."""
    sha = require_pin(record)
    got, size = hash_path(archive)
    if got != sha:
        raise HashMismatch(f"{record.ref}: {archive} does not match the pinned sha256 (expected {sha}, got {got})",
                           hint="pin the record to this archive's sha256", model=record.ref, expected=sha, actual=got)
    if record.size is not None and size != record.size:
        raise SizeMismatch(f"{record.ref}: {archive} has {size} bytes but the record declares {record.size}",
                           hint="fix package.artefact.size", model=record.ref)
    packages = PackagesFolder(packages_dir)
    packages.reuse(sha, record.ref, blob=Path(archive), deep=True, again_from=str(archive))
    folder = _unpack(record, sha, archive, packages)
    return VerifiedPackage(record, upstream, sha, folder, packages.entries(sha), Path(archive).resolve().as_uri(),
                           True, _mint=_MINT)


def _unpack(record: Record, sha: str, blob: Path, packages: PackagesFolder) -> Path:
    media_type = str(record.artefact.get("media_type", "application/zip"))
    filename = package_filename(record) if media_type == OCTET else None
    return packages.unpack_package(blob, sha, media_type, filename=filename)


def _materialise(record: Record, ref: str, sha: str, settings: Settings, ctx: SourceContext,
                 fetch_allowed: bool, progress: ByteProgress | None = None) -> tuple[Path, dict[str, Any], str]:
    packages = PackagesFolder(settings.packages_dir)
    pkg = packages.path(sha)
    store = Store(settings.store_dir)
    # the tree against its manifest (every entry, no link followed, every file re-hashed), and
    # the manifest against the blob's own listing (names, sizes, folders), so that a manifest
    # rewritten to match a planted file fails too; a gzip'd tar is listed by `synthmed verify`
    # only (listing it means decompressing all of it). One that changed is removed, never run.
    media_type = str(record.artefact.get("media_type", "application/zip"))
    blob = store.blob_path(sha) if packages.exists(sha) and store.has(sha) and media_type != GZIP else None
    if packages.reuse(sha, ref, blob=blob, again_from="the verified blob"):
        return pkg, packages.entries(sha), "packages"
    if not fetch_allowed and not store.has(sha):
        raise ArtefactNotFound(
            f"{ref} is not mirrored on this site ({pkg} is missing) and the site is offline",
            hint="mirror it with the daemon (`synthmed daemon run --once`), or run without offline to fetch it now",
            model=ref)
    source = _fetch_verified(record, ref, sha, store, ctx, progress)
    folder = _unpack(record, sha, store.blob_path(sha), packages)
    return folder, packages.entries(sha), source


def _rehash(store: Store, sha: str) -> None:
    """Hash a stored blob in full, whatever the store remembers about it: it is about to be
    unpacked, and the remembered (inode, size, mtime) cannot see bytes that rotted in place.
    BlobCorrupt when it no longer hashes to its name."""
    path = store.blob_path(sha)
    try:
        digest, _ = hash_path(path)
    except FileNotFoundError:
        raise ArtefactNotFound(f"blob {sha} vanished from the store {store.root}", sha256=sha) from None
    if digest != sha:
        raise BlobCorrupt(f"{path}: the blob no longer hashes to its name (it hashes to {digest}); refusing to "
                          "unpack it", hint="run `synthmed verify` to quarantine it, then fetch it again",
                          sha256=sha, actual=digest, path=path)


def _fetch_verified(record: Record, ref: str, sha: str, store: Store, ctx: SourceContext,
                    progress: ByteProgress | None = None) -> str:
    """Fetch the blob (once; again once if it is found corrupt); the source that served it.

    The blob is about to be unpacked, so one already in the store is re-hashed in full
    (:func:`_rehash`); one fetched now was hashed as it streamed in."""
    for attempt in (1, 2):
        try:
            result = store.fetch(sha, record.size, record.sources, ctx, progress=progress)
            if result.source == "store":
                _rehash(store, sha)
        except BlobCorrupt as exc:
            store.quarantine_blob(sha, "blob corrupt on disk (found on open)", actual_sha256=getattr(exc, "actual", None))
            if attempt == 2:
                raise type(exc)(f"{ref}: the package failed verification: {exc.message}",
                                hint="run `synthmed verify` (re-hashes the store, re-fetches corrupt blobs)",
                                model=ref) from exc
            log.warning("%s: %s; fetching it again", ref, exc.message)
            continue
        except HashMismatch as exc:
            raise HashMismatch(
                f"{ref}: the package failed verification: {exc.message}",
                hint="run `synthmed verify` (re-hashes the store, re-fetches corrupt blobs); if a source serves other "
                     f"bytes than the pin, the record needs `synthmed index pin {record.ref}` by a maintainer",
                model=ref) from exc
        except ArtefactNotFound as exc:
            hints = [exc.hint] if exc.hint else []
            if "hash" in exc.message:
                hints.append("the bytes served do not match the pinned sha256: nothing was run; if the pin itself "
                             f"is wrong, a maintainer re-pins it with `synthmed index pin {record.ref}`")
            hints.append("`synthmed verify` re-hashes this site's store")
            raise ArtefactNotFound(f"{ref}: {exc.message}", hint="; ".join(hints), model=ref,
                                   failures=getattr(exc, "failures", None)) from exc
        if record.size is not None and result.size != record.size:
            # a blob hashes to its name, so this means the record's size is wrong
            raise SizeMismatch(
                f"{ref} ({record.path}): the blob {sha} has {result.size} bytes but the record declares "
                f"{record.size}", hint="the record's package.artefact.size is wrong; fix it in the index", model=ref)
        if result.source != "store":
            log.info("%s: fetched its package (sha256 %s) from %s", ref, sha[:12], result.source)
        return result.source
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_data(sha256: str, size: int | None, sources: list[str], settings: Settings, *, upstream: str | None,
               index_repo: Path | None, index_commit: str | None, index_subfolder: str) -> Path:
    """The verified blob of a pinned artefact that is data, never code (an extractor's
    weights, read as safetensors or with ``weights_only=True``): fetched into the store
    against its pin, through the same sources and :func:`source_context` as packages, and
    never unpacked. Offline, only local sources, loopback hosts and the site's mirrors
    serve it (the sources' rule, as for the mirror job): no ``allow_code`` applies, since
    nothing of it runs."""
    return fetch_data_result(sha256, size, sources, settings, upstream=upstream, index_repo=index_repo,
                             index_commit=index_commit, index_subfolder=index_subfolder).path


def fetch_data_result(sha256: str, size: int | None, sources: list[str], settings: Settings, *,
                      upstream: str | None, index_repo: Path | None, index_commit: str | None,
                      index_subfolder: str) -> FetchResult:
    """:func:`fetch_data`, saying where the bytes came from (``FetchResult.source``: "store"
    when the blob was already there): the mirror job records it for a published dataset."""
    ctx = source_context(settings, upstream, index_repo, index_commit, index_subfolder)
    return Store(settings.store_dir).fetch(sha256, size, sources, ctx)
