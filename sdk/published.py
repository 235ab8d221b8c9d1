"""Published synthetic datasets on a site (#24): ``synthmed dataset list/show/get`` and what
verifying and loading one build on.

A :class:`PublishedDataset` is one dataset version the site's catalog holds
(``Site.dataset(ref)``). Its bytes are one blob of the store, pinned by the record's
sha256; whatever uses them goes through :meth:`PublishedDataset.blob`, which fetches it
on demand through the store's copy pipeline (as the mirror job does, unless the site is
offline) and re-hashes it in full before it is read, so a blob that rotted or was
tampered with in the store is refused (:class:`~synthmed.registry.errors.BlobCorrupt`)
and nothing is written. Unpacking goes through
:func:`~synthmed.registry.artefacts.dataset_archive.unpack` (the safe tar reader, then the
tree held to the run manifest) into a staging folder beside the destination, and is then
checked against the record itself (the manifest's sha256, the inputs' digests) before the
staging folder is renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from synthmed.registry.artefacts import dataset_archive
from synthmed.registry.artefacts.store import Store
from synthmed.registry.catalog import DatasetEntry
from synthmed.registry.dataset_records import DatasetRecord
from synthmed.registry.errors import ArtefactError, BlobCorrupt, ConfigError
from synthmed.registry.hashing import hash_path
from synthmed.registry.packages import fetch_data
from synthmed.registry.settings import Settings

if TYPE_CHECKING:
    from .published_torch import PublishedTorchDataset

log = logging.getLogger(__name__)

#: the unpacked, verified copies ``Site.dataset(...).folder()`` keeps (under the site's home)
CACHE = ("cache", "datasets")
#: written last into a cached copy: the folder was checked in full against the record
CHECKED_MARK = ".synthmed-checked"


class PublishedDataset:
    """One published dataset version of a site (``Site.dataset(ref)``)."""

    def __init__(self, settings: Settings, entry: DatasetEntry) -> None:
        self.settings = settings
        self.entry = entry

    def __repr__(self) -> str:
        return f"PublishedDataset({self.entry.qualified_ref!r})"

    @property
    def record(self) -> DatasetRecord:
        return self.entry.record

    @property
    def ref(self) -> str:
        return self.entry.qualified_ref

    @property
    def sha256(self) -> str:
        return self.record.sha256

    def __len__(self) -> int:
        return int(self.record.generation["count"])

    # -- what `show` prints --------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Record, card, provenance, audit, sha256, sources and the mirrored state."""
        data = self.record.data
        gen = self.record.generation
        store = Store(self.settings.store_dir)
        return {**self.entry.summary(), "summary": data.get("summary"), "description": data.get("description"),
                "status_reason": self.entry.status_reason, "card": data.get("card"), "authors": data.get("authors"),
                "provenance": {"model": self.entry.model_ref, "model_sha256": self.record.model["sha256"],
                               "params": gen.get("params", {}), "options": gen.get("options", {}),
                               "first_seed": gen["first_seed"], "count": gen["count"],
                               "seeds": f"{gen['first_seed']}..{gen['first_seed'] + gen['count'] - 1} "
                                        "(item i from seed first_seed + i)",
                               "inputs": gen.get("inputs", []), "layout": gen["layout"],
                               "manifest_sha256": gen["manifest_sha256"], "device": gen.get("device"),
                               "tolerance": gen.get("tolerance")},
                "audit_detail": data.get("audit"), "sources": list(self.record.artefact["sources"]),
                "in_store": store.has(self.sha256), "index_commit": self.entry.index_commit,
                "shadows": list(self.entry.shadows), "record": dict(data)}

    # -- the verified bytes --------------------------------------------------------------

    def blob(self) -> Path:
        """The artefact's blob in the store, fetched on demand (the sources' offline rule
        applies) and re-hashed in full: BlobCorrupt when the store's copy does not hash to
        the record's sha256."""
        store = Store(self.settings.store_dir)
        e = self.entry
        if not store.has(self.sha256):
            fetch_data(self.sha256, int(self.record.artefact["size"]), list(self.record.artefact["sources"]),
                       self.settings, upstream=e.upstream, index_repo=e.index_repo,
                       index_commit=e.index_commit, index_subfolder=e.index_subfolder)
        path = store.blob_path(self.sha256)
        digest, _ = hash_path(path)
        if digest != self.sha256:
            raise BlobCorrupt(f"{e.qualified_ref}: the store's copy of its artefact {path} hashes to {digest}, "
                              f"not to the record's {self.sha256}; refusing to use it (nothing was written)",
                              hint="run `synthmed verify` to quarantine it, then `synthmed sync` (or the daemon's "
                                   "mirror job) fetches it again from its sources",
                              sha256=self.sha256, actual=digest, path=path)
        return path

    def _check_against_record(self, folder: Path, manifest: dict[str, Any]) -> None:
        gen = self.record.generation
        digest, _ = hash_path(folder / dataset_archive.MANIFEST)
        if digest != gen["manifest_sha256"]:
            raise ArtefactError(f"{self.ref}: the artefact's {dataset_archive.MANIFEST} hashes to {digest[:12]}..., "
                                f"the record pins {str(gen['manifest_sha256'])[:12]}...",
                                hint="the artefact and its record disagree; tell the index's maintainers")
        for spec in gen.get("inputs", []):
            got, count = dataset_archive.inputs_digest(folder, spec["name"])
            if got != spec["files_sha256"] or count != spec["count"]:
                raise ArtefactError(f"{self.ref}: input {spec['name']!r} in the artefact ({count} file(s), digest "
                                    f"{got[:12]}...) is not the one the record pins ({spec['count']} file(s), "
                                    f"{str(spec['files_sha256'])[:12]}...)",
                                    hint="the artefact's inputs/ were altered; do not use it")
        run = manifest.get("run") or {}
        if run.get("sha256") not in (None, self.record.model["sha256"]):
            raise ArtefactError(f"{self.ref}: the run manifest names model package {str(run.get('sha256'))[:12]}..., "
                                f"the record {str(self.record.model['sha256'])[:12]}...",
                                hint="the artefact was not made by the model its record names")

    def _unpack_into(self, dest: Path, *, mark: bool = False) -> Path:
        """Unpack the verified blob into a staging folder beside ``dest``, check it (and
        with ``mark`` leave :data:`CHECKED_MARK` in it), then rename it to ``dest`` (which
        must not exist)."""
        blob = self.blob()
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
        try:
            manifest = dataset_archive.unpack(blob, staging / "tree")
            self._check_against_record(staging / "tree", manifest)
            if mark:
                (staging / "tree" / CHECKED_MARK).write_text(self.sha256 + "\n")
            os.rename(staging / "tree", dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    def get(self, dest: Path | str) -> Path:
        """A verified copy of the dataset's files in ``dest`` (created; an existing empty
        folder is taken, a non-empty one refused): the manifest, every sample file and
        ``inputs/``."""
        dest = Path(dest).absolute()
        was_empty = dest.exists()
        if was_empty:
            if not dest.is_dir() or any(dest.iterdir()):
                raise ConfigError(f"{dest} exists and is not an empty folder; refusing to write the dataset there",
                                  hint="give a new folder (or an empty one) to -o")
            dest.rmdir()
        try:
            return self._unpack_into(dest)
        except BaseException:
            if was_empty and not dest.exists():
                dest.mkdir()  # left as it was found
            raise

    def folder(self, where: Path | str | None = None) -> Path:
        """An unpacked, verified copy to read from: ``where`` when given, else the site's
        ``cache/datasets/<sha256>/``. Made (and checked in full) once; a later call
        checks that every file the manifest lists is there with its size."""
        dest = Path(where) if where is not None else self.settings.home.joinpath(*CACHE, self.sha256)
        if not (dest / CHECKED_MARK).is_file():
            if dest.exists():
                if any(dest.iterdir()):
                    raise ConfigError(f"{dest} is not empty and holds no checked copy of {self.ref}",
                                      hint="give an empty or new folder")
                dest.rmdir()
            try:
                self._unpack_into(dest, mark=True)
            except PermissionError as exc:
                raise ConfigError(f"cannot unpack {self.ref} into {dest}: {exc.strerror}",
                                  hint="this site's folder is read-only for you: give a folder of your own "
                                       "(torch_dataset(folder=DIR), --folder), or ask its admin") from None
            except OSError:
                if not (dest / CHECKED_MARK).is_file():  # another process made it meanwhile: use that one
                    raise
        if (dest / CHECKED_MARK).is_file():
            manifest = dataset_archive.read_manifest(dest)
            for rel, want in manifest["files"].items():
                try:
                    if (dest / rel).stat().st_size != want["size"]:
                        raise FileNotFoundError(rel)
                except FileNotFoundError:
                    raise ArtefactError(f"{dest}: {rel} is missing or changed since the copy was checked",
                                        hint=f"remove {dest}; the next use unpacks the verified blob again") from None
        return dest

    def torch_dataset(self, *, outputs: Any = None, transform: Callable[[Any], Any] | None = None,
                      folder: Path | str | None = None) -> "PublishedTorchDataset":
        """A map-style torch Dataset over the verified copy (:meth:`folder`): item ``i`` is
        the dict of :class:`synthmed.datasets.SyntheticDataset` (one tensor per output,
        masks included, ``index`` and ``seed``), read from the published files."""
        from .published_torch import PublishedTorchDataset

        return PublishedTorchDataset(self.folder(folder), self.record, self.ref, self.settings.inputs.max_decoded_bytes,
                                     outputs=outputs, transform=transform)
