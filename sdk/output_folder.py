"""The output folder of a generation run: file names by sample index, atomic writes, the
provenance sidecar, and resuming an interrupted run without duplicates.

Layout of an output folder::

    synthmed.json            provenance sidecar (model, version, sha256, seeds, params, ...)
    <output>/000017.<ext>    one file per sample and output, named by the sample index

In medigan's layout the folder holds only the images (``batch_0_17.png``) and the sidecar
sits beside it, ``<folder>.synthmed.json`` (:func:`synthmed.folder_files.sidecar_path`).

Sample ``i`` of a run is made from seed ``seed + i``. Every file is written to a
temporary name and renamed into place, so a file that exists is complete; a run that
is interrupted and started again skips the indices already written.

One run per folder at a time: every process of a run (each shard, each device worker)
holds a shared ``flock`` on the folder itself from :meth:`OutputFolder.open` (before its
model loads) to :meth:`OutputFolder.close`, taken under the sidecar's lock
(``.synthmed.lock`` in the folder; beside it for medigan's layout) once the sidecar says the folder is this run's. A process of another
run (another identity: model, package, seed, parameters, format, outputs, options) finds
that lock held and is refused, naming the folder; shards of the same run share it. The
locks are the kernel's, so a killed process leaves none. The files
themselves are made by the encoders of :mod:`synthmed.output_formats`; the array layout
of each output is :mod:`synthmed.registry.outputs`'.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from synthmed.registry import atomic
from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import record_specs
from synthmed.registry.records import Record
from synthmed.registry.stamps import synthmed_version

from .format_rules import select_outputs
from .medigan_compat import medigan_file_name
from .png_encoder import DEFAULT_LEVEL
from .folder_files import MANIFEST, SIDECAR, SIDECAR_FORMAT, lock_path, sidecar_path
from .run_manifest import write_manifest
from .sample_hashes import HashJournal, sha256_of, sha256_of_file
from .output_formats import AUTO_FORMATS, ENCODERS, EXTENSIONS, FORMATS, SYNTHETIC_NOTE, WriteContext, dicom_is_series

log = logging.getLogger(__name__)

#: file name layouts of an output folder
LAYOUTS = ("synthmed", "medigan")
INDEX_DIGITS = 6


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _folder_error(folder: Path, exc: OSError) -> ConfigError:
    """A clear error for an output folder that cannot be created or written."""
    blocker = next((p for p in (Path(str(exc.filename or folder)), *Path(str(exc.filename or folder)).parents)
                    if p.exists() and not p.is_dir()), None)
    why = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
    return ConfigError(f"cannot write samples to {folder}: {why}",
                       hint="give an output folder that does not exist yet, or an existing folder you can write to",
                       folder=str(folder))


_TMP = re.compile(r"^\.(\d+)\.tmp-\d+(\..*)?$")



@dataclass
class OutputFolder:
    """One run's output folder: file names by sample index, atomic writes, the
    provenance sidecar, and resuming an interrupted run without duplicates."""

    folder: Path
    record: Record
    fmt: str
    seed: int
    params: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    upstream: str | None = None
    runner_info: Mapping[str, Any] = field(default_factory=dict)
    #: the outputs to write (None: all of them, or with format "png" all 2D ones)
    outputs: Sequence[str] | None = None
    #: file names: "synthmed" (``<output>/<index:06d>.<ext>``) or "medigan" (medigan's
    #: ``batch_<i // 32>_<i % 32>.<ext>`` in the folder itself, ``_<output>`` added for the
    #: second and further outputs; see :func:`synthmed.medigan_compat.medigan_file_name`)
    layout: str = "synthmed"

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown output format {self.fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
        # absolute: writer threads write while a medigan-1 package's generate() runs in a
        # private working directory (the runner chdirs around it), so a relative path would
        # land in, or fail on, that folder
        self.folder = Path(os.path.abspath(self.folder))
        all_specs = record_specs(self.record)
        self.specs, self.left_out = select_outputs(self.record.ref, all_specs, self.outputs, self.fmt)
        # per output: "auto" picks PNG for 2D outputs and NIfTI for volumes
        self.formats = {sp.name: AUTO_FORMATS[sp.dims] if self.fmt == "auto" else self.fmt for sp in self.specs}
        # a DICOM volume is a folder of per-slice files: DIR/<output>/000017/0001.dcm ...
        self.exts = {s.name: "" if self.formats[s.name] == "dicom" and dicom_is_series(s) else EXTENSIONS[self.formats[s.name]]
                     for s in self.specs}
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown file layout {self.layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
        self.sidecar_path = sidecar_path(self.folder, self.layout)
        #: where earlier versions kept a medigan-layout folder's sidecar (read, then moved out)
        self._legacy_sidecar = self.folder / SIDECAR if self.layout == "medigan" else None
        flat = self.layout == "medigan"
        self._dirs = {s.name: os.fspath(self.folder if flat else self.folder / s.name) for s in self.specs}
        self._suffix = {s.name: (None if i == 0 else s.name) for i, s in enumerate(self.specs)}
        self.run: dict[str, Any] = {}
        self.num_samples = 0
        #: the folder's descriptor holding this process's shared run lock (open .. close)
        self._run_fd: int | None = None
        #: when the run's first sidecar was written (from the sidecar read at open)
        self._created: str | None = None
        #: the writers' hashes of the sample files, for the manifest (synthmed's layout
        #: only: medigan's names get no manifest; a DICOM series folder is hashed at close)
        self._journal = HashJournal(self.folder, [s.name for s in self.specs if self.exts[s.name]]) \
            if self.layout == "synthmed" else None

    # -- paths --
    # (plain strings in the per-file paths: pathlib interns every path part, so a
    # Path per file would grow the interpreter's intern table with the sample count)
    def _path(self, name: str, index: int) -> str:
        if self.layout == "medigan":
            return os.path.join(self._dirs[name], medigan_file_name(index, self._suffix[name], self.exts[name]))
        return os.path.join(self._dirs[name], f"{index:0{INDEX_DIGITS}d}{self.exts[name]}")

    def is_complete(self, index: int) -> bool:
        return all(os.path.exists(self._path(s.name, index)) for s in self.specs)

    # -- sidecar --
    def _options(self) -> dict[str, Any]:
        """The writing options that change the files (and so belong to a run's identity)."""
        opts = {k: v for k, v in self.options.items() if k in ("bit_depth", "window")}
        level = self.options.get("png_compress_level", DEFAULT_LEVEL)
        if level != DEFAULT_LEVEL and "png" in self.formats.values():
            opts["png_compress_level"] = level  # other bytes for the same pixels: not mixed in one folder
        if "window" in opts:
            opts["window"] = {"center": float(opts["window"][0]), "width": float(opts["window"][1])}
        return opts

    def _identity(self) -> dict[str, Any]:
        return {"model": self.record.ref, "sha256": self.record.sha256, "file_format": self.fmt,
                "seed": self.seed, "params": json.loads(json.dumps(dict(self.params), default=str)),
                "options": self._options(), "outputs": [s.name for s in self.specs], "layout": self.layout}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sidecar's lock (an ``fcntl`` lock on :func:`~synthmed.folder_files.lock_path`,
        so a killed holder leaves no lock; never the folder itself, which carries the run
        lock): the shards and device workers of a run share the sidecar."""
        fd = os.open(lock_path(self.folder, self.layout), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def open(self, num_samples: int, owned: range | None = None,
             start: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None) -> None:
        """Create the folder, or check that an existing one belongs to the same run.

        ``owned``: the indices this process writes (its shard); only their temporary files
        are stale (other shards may be writing theirs right now). None: every index.
        ``start``: called under the folder's lock with the ``runner`` section an earlier
        run of the same run recorded ({} for a new run), it returns this run's (which the
        sidecar records): the sidecar is read once, here, and what a resume needs (a
        medigan-1 chunk size) is passed on."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for s in self.specs:
                Path(self._dirs[s.name]).mkdir(exist_ok=True)
        except OSError as exc:
            raise _folder_error(self.folder, exc) from exc
        for d in dict.fromkeys(self._dirs.values()):
            for stale in Path(d).iterdir():
                m = _TMP.match(stale.name)
                if m and (owned is None or int(m.group(1)) in owned):
                    if stale.is_dir() and not stale.is_symlink():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)
        with self.locked():
            try:
                self._open_sidecar(num_samples, start)
            except BaseException:
                self.release()
                raise
        if self._journal is not None:
            self._journal.open()

    def _join_run(self, existing: Mapping[str, Any] | None, diff: Sequence[str], old: Mapping[str, Any]) -> bool:
        """Under the folder's lock: take this process's shared run lock on the folder.
        Returns whether no other process of any run held it. Another run (``diff``: what
        differs from the sidecar's run) holding it is refused."""
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            if not alone and existing is not None and diff:
                raise ConfigError(
                    f"{self.folder}: another run is writing into this folder right now (different "
                    f"{', '.join(diff)}: {', '.join(f'{k}={old.get(k)!r}' for k in diff)}); two runs in one folder "
                    "would mix their samples",
                    hint="wait until it has finished, or write to another folder (shards of one run share a folder: "
                         "the same model, seed, parameters and format)", folder=str(self.folder))
            fcntl.flock(fd, fcntl.LOCK_SH)  # the other processes of this run may join
        except BaseException:
            os.close(fd)
            raise
        self._run_fd = fd
        return alone

    def release(self) -> None:
        """Let go of this process's run lock (idempotent; :meth:`close` calls it)."""
        fd, self._run_fd = self._run_fd, None
        if fd is not None:
            os.close(fd)

    def _open_sidecar(self, num_samples: int,
                      start: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None) -> None:
        existing = self.read_sidecar()
        if existing is not None:
            old = {"model": existing.get("model", {}).get("ref"), "sha256": existing.get("model", {}).get("sha256"),
                   "file_format": existing.get("format"), "seed": existing.get("seeds", {}).get("first"),
                   "params": existing.get("params"), "options": existing.get("options", {}),
                   "outputs": [str(o.get("name")) for o in existing.get("outputs", []) if isinstance(o, dict)],
                   "layout": existing.get("layout", "synthmed")}
            new = self._identity()
            diff = [k for k in new if old.get(k) != new[k]]
            alone = self._join_run(existing, diff, old)
            if diff and alone and not self._holds_samples(existing):
                # a run that failed before writing any sample (e.g. the model refused its
                # params) leaves only its sidecar: nothing to mix with, so start afresh
                log.info("%s: replacing the sidecar of an earlier run that wrote no samples", self.folder)
                existing, diff = {}, []
            if diff:
                raise ConfigError(
                    f"{self.folder} already holds samples of another run (different {', '.join(diff)}: "
                    f"{', '.join(f'{k}={old.get(k)!r}' for k in diff)}); resuming into it would mix runs",
                    hint="write to another folder, or remove this one")
            self.run = dict(existing.get("run", {}))
            self._created = existing.get("created")
            before = int(existing.get("num_samples", 0))
            if num_samples > before:  # a longer run: the manifest of the shorter one no longer describes it
                (self.folder / MANIFEST).unlink(missing_ok=True)
            num_samples = max(num_samples, before)
        else:
            self._join_run(None, (), {})
            stray = [p for p in self.folder.iterdir() if p.name != SIDECAR and not p.name.startswith(".")
                     and p.name not in {s.name for s in self.specs}]
            if self.layout == "medigan" and any(p.name.startswith("batch_") for p in stray):
                raise ConfigError(f"{self.folder} already holds medigan-style files (batch_*) but no "
                                  f"{self.sidecar_path.name} beside it; "
                                  "synthmed does not write over samples it cannot tell apart from its own",
                                  hint="write to another folder (or leave output_path out: a new folder per run)")
            if stray:
                log.warning("%s holds other files (%s); synthmed writes beside them", self.folder,
                            ", ".join(p.name for p in stray[:5]))
        if start is not None:
            earlier = (existing or {}).get("runner")
            self.runner_info = dict(start(earlier if isinstance(earlier, dict) else {}))
        self.num_samples = num_samples
        self.write_sidecar(complete=False)

    def _holds_samples(self, existing: Mapping[str, Any]) -> bool:
        """True when any output subfolder (of this run or of the sidecar's) holds a sample file."""
        if existing.get("layout") == "medigan" or self.layout == "medigan":
            with os.scandir(self.folder) as it:
                if any(e.name.startswith("batch_") for e in it):
                    return True
        names = {s.name for s in self.specs}
        outputs = existing.get("outputs")
        if isinstance(outputs, list):
            names |= {str(o.get("name")) for o in outputs if isinstance(o, dict) and o.get("name")}
        for name in names:
            sub = self.folder / name
            if ".." in Path(name).parts or not sub.is_dir():
                continue
            with os.scandir(sub) as it:
                if any(not e.name.startswith(".") for e in it):
                    return True
        return False

    def read_sidecar(self) -> dict[str, Any] | None:
        paths = [self.sidecar_path] + ([self._legacy_sidecar] if self._legacy_sidecar else [])
        for path in paths:
            try:
                data: dict[str, Any] = json.loads(path.read_text("utf-8"))
                return data
            except FileNotFoundError:
                continue
            except ValueError as exc:
                raise ConfigError(f"{path} is not valid JSON ({exc})",
                                  hint="remove the folder or the file and run again") from exc
        return None

    def sidecar(self, complete: bool) -> dict[str, Any]:
        rec = self.record
        if self._created is None:
            self._created = (self.read_sidecar() or {}).get("created") or _now()
        created = self._created
        return {
            "sidecar_format": SIDECAR_FORMAT,
            "synthetic": True,
            "note": f"{SYNTHETIC_NOTE} {rec.ref}; not real patient data",
            "synthmed_version": synthmed_version(),
            "model": {
                "id": rec.id, "version": rec.version, "ref": rec.ref, "upstream": self.upstream,
                "sha256": rec.sha256, "package_format": rec.package_format, "title": rec.get("title"),
                "license": rec.get("license"),
            },
            "format": self.fmt,
            "options": self._options(),
            "selection": {"outputs": [s.name for s in self.specs], "left_out": dict(self.left_out)},
            "seeds": {"first": self.seed, "last": self.seed + self.num_samples - 1, "rule": "sample i uses seed first+i"},
            "num_samples": self.num_samples,
            "params": json.loads(json.dumps(dict(self.params), default=str)),
            "layout": self.layout,
            "outputs": [{"name": s.name, "files": os.path.relpath(self._path(s.name, 0), self.folder),
                         "format": self.formats[s.name], "dims": s.dims,
                         "shape": list(s.shape), "dtype": s.dtype, "channels": s.channels,
                         "value_range": list(s.value_range), "kind": s.kind,
                         **({"window": {"center": s.window[0], "width": s.window[1]}} if s.window else {}),
                         **({"spacing_mm": list(s.spacing_mm)} if s.spacing_mm else {})} for s in self.specs],
            "runner": dict(self.runner_info),
            "run": self.run,
            "created": created,
            "updated": _now(),
            "complete": complete,
        }

    def write_sidecar(self, complete: bool) -> None:
        atomic.write_json(self.sidecar_path, self.sidecar(complete), mode=0o644)  # as readable as the samples
        if self._legacy_sidecar is not None:  # a folder an earlier version wrote: its sidecar moves out
            self._legacy_sidecar.unlink(missing_ok=True)

    # -- samples --
    def write(self, index: int, sample: Mapping[str, np.ndarray]) -> None:
        """Write one sample's outputs (arrays without the batch axis); masks after the
        other outputs, so a DICOM SEG can refer to the image it segments."""
        numbered = list(enumerate(self.specs, start=1))
        numbered.sort(key=lambda ns: ns[1].kind == "mask")
        sources = {s.name: self._path(s.name, index) for s in self.specs}
        for series, spec in numbered:
            encode = ENCODERS[self.formats[spec.name]]
            final = self._path(spec.name, index)
            if os.path.exists(final):
                continue
            # the temporary name keeps the extension (nibabel picks the format from it)
            tmp = os.path.join(self._dirs[spec.name], f".{index:0{INDEX_DIGITS}d}.tmp-{os.getpid()}{self.exts[spec.name]}")
            ctx = WriteContext(self.record, index, self.seed + index, spec,
                               {**self.options, "series_number": series}, self.run,
                               sources={k: v for k, v in sources.items()
                                        if k != spec.name and self.formats[k] == self.formats[spec.name]})
            with atomic.replacing(final, tmp):
                data = encode(tmp, sample[spec.name], ctx)
                if self._journal is not None and self.exts[spec.name]:
                    # the bytes just encoded (else the file while it is in the page cache)
                    self._journal.record(spec.name, index, sha256_of(data) if data is not None else sha256_of_file(tmp),
                                         tmp)

    def write_batch(self, indices: Sequence[int], outputs: Mapping[str, np.ndarray]) -> None:
        for j, index in enumerate(indices):
            self.write(index, {name: arr[j] for name, arr in outputs.items()})

    def missing(self, indices: range | None = None) -> int:
        """How many of ``indices`` (default: every sample of the run) are not complete
        (a stat per file: memory stays flat in the sample count)."""
        indices = range(self.num_samples) if indices is None else indices
        return sum(1 for i in indices if not self.is_complete(i))

    def close(self, complete: bool | None = None) -> bool:
        """Write the sidecar, and the manifest when every sample of the run is there.
        ``complete=None`` looks (every shard's samples count); False: the run failed.
        Returns whether the run is complete. Lets go of the run lock."""
        with self.locked():
            try:
                for key, value in ((self.read_sidecar() or {}).get("run") or {}).items():
                    self.run.setdefault(key, value)  # notes other shards recorded
                if complete is None or complete:
                    complete = self.missing() == 0
                self.write_sidecar(complete=complete)
                if complete and self._journal is not None:  # medigan's names: no manifest (sdk.md)
                    self._journal.open()
                    write_manifest(self.folder, self.sidecar(complete=True), self._journal)
                    self._journal.remove()  # every hash is in the manifest now
                elif self._journal is not None:
                    self._journal.close()  # kept for the run that completes the folder
            finally:
                self.release()
        return complete
