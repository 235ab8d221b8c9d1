"""A contribution's package and its record, before any upload: the reproducible zip, the
record built from the metadata and checked, the package's contents against the record,
and the model test of the zip prepared as a site would prepare it. Used by
:func:`synthmed.registry.authoring.contribute.contribute` and by ``synthmed package test``
(:func:`test_package_dir`, which needs no site and no index).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..checks import modeltest
from ..errors import ContributeError
from ..hashing import hash_path
from ..packages import prepare_archive
from ..record_paths import record_relpath
from ..records import is_valid_id, load_record_text, validate_data
from ..checks.report import ModelTestResult, write_report
from ..runner import RunnerOptions

log = logging.getLogger(__name__)

#: a fixed timestamp for every zip entry (the zip epoch), so the same files give the same bytes
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIP_NAMES = {"__pycache__", ".git", ".dvc", ".DS_Store", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


# --- packaging ------------------------------------------------------------------------


def package_files(package_dir: Path) -> list[Path]:
    """The package's files, sorted, without caches, VCS folders, links and byte code; a
    link, FIFO, socket or device is refused by name (looked at, never opened: a FIFO would
    block the zip)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                continue
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ContributeError(f"{p}: the package holds a symbolic link; packages may hold only plain files",
                                      hint="replace the link by the file it points to")
            if not stat.S_ISREG(mode):
                kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device file"
                raise ContributeError(f"{p}: the package holds {kind}; packages may hold only plain files",
                                      hint="remove it from the package folder")
            files.append(p)
    return sorted(files, key=lambda p: p.relative_to(package_dir).as_posix())


def reproducible_zip(package_dir: Path, dest: Path) -> tuple[str, int]:
    """Zip ``package_dir`` into ``dest`` with sorted entries, fixed timestamps and modes;
    the same files always give the same bytes. Returns (sha256, size)."""
    files = package_files(package_dir)
    if not files:
        raise ContributeError(f"{package_dir}: the package folder holds no files",
                              hint="point PACKAGE_DIR at the folder with the model's code and weights")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(package_dir).as_posix(), date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.create_system = 3  # unix, whatever the host
            with open(p, "rb") as src, zf.open(info, "w") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return hash_path(dest)


# --- the record -----------------------------------------------------------------------


def load_metadata(metadata: Mapping[str, Any] | Path | str | None) -> dict[str, Any]:
    if metadata is None:
        raise ContributeError("no metadata given: a contribution needs the record's descriptive fields",
                              hint="write them into a JSON file (title, summary, modality, anatomy, generates, "
                                   "architecture, task, inputs, outputs, license, authors, package.entry_point, test) "
                                   "and pass --metadata FILE; see docs/contributing.md")
    if isinstance(metadata, Mapping):
        return copy.deepcopy(dict(metadata))
    path = Path(metadata)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ContributeError(f"{path}: metadata file not found", hint="check the --metadata path") from None
    except json.JSONDecodeError as exc:
        raise ContributeError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                              hint="fix the JSON syntax of the metadata file") from exc
    if not isinstance(data, dict):
        raise ContributeError(f"{path}: the metadata must be a JSON object, not {type(data).__name__}")
    return data


def build_record(meta: Mapping[str, Any], model_id: str, version: str, *, sha256: str, size: int,
                 sources: list[str], package_format: str | None = None, entry_point: str | None = None) -> dict[str, Any]:
    """The record: the metadata merged with the computed identity and artefact fields."""
    data = copy.deepcopy(dict(meta))
    data.pop("$schema", None)
    for key, want in (("id", model_id), ("version", version)):
        if key in data and data[key] != want:
            raise ContributeError(f"the metadata says {key} = {data[key]!r} but --{key} is {want!r}",
                                  hint=f"remove {key!r} from the metadata file or make it match")
    pkg = dict(data.get("package") or {})
    if "artefact" in pkg:
        log.warning("ignoring package.artefact from the metadata: synthmed computes it")
    pkg["artefact"] = {"sha256": sha256, "size": size, "media_type": "application/zip", "sources": list(sources)}
    pkg["format"] = package_format or pkg.get("format") or "synthmed-1"
    if entry_point:
        pkg["entry_point"] = entry_point
    ordered: dict[str, Any] = {"format": "synthmed-record/1", "id": model_id, "version": version}
    data.setdefault("status", "active")
    ordered.update({k: v for k, v in data.items() if k not in ordered and k != "package"})
    ordered["package"] = {k: pkg[k] for k in ("format", "artefact", "entry_point", "requirements", "python",
                                              "devices", "weights", "generate_args") if k in pkg}
    ordered["package"].update({k: v for k, v in pkg.items() if k not in ordered["package"]})
    # keep the record's conventional order: package, test, provenance last
    for key in ("test", "provenance"):
        if key in ordered:
            ordered[key] = ordered.pop(key)
    return ordered


def check_record(data: Mapping[str, Any], where: str) -> None:
    errors, _warnings = validate_data(data, where, record_relpath(str(data["id"]), str(data["version"])))
    if errors:
        lines = "\n".join(f"  {p.json_path}: {p.message}" for p in errors)
        raise ContributeError(f"the record built from the metadata is not valid ({len(errors)} problem(s)):\n{lines}",
                              hint="fix these fields in the metadata file (JSON paths are of the record)",
                              problems=list(errors))


def check_package_contents(package_dir: Path, record: Mapping[str, Any]) -> None:
    """The package holds what the record points to: the entry point's module (synthmed-1)
    or medigan's ``__init__.py`` (medigan-1), and ``package.weights`` when named."""
    pkg = record["package"]
    module = str(pkg["entry_point"]).partition(":")[0]
    parts = module.split(".")
    if pkg["format"] == "synthmed-1":
        base = package_dir.joinpath(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            raise ContributeError(
                f"{package_dir}: the entry point {pkg['entry_point']!r} names module {module!r}, but neither "
                f"{'/'.join(parts)}.py nor {'/'.join(parts)}/__init__.py is in the package",
                hint="fix package.entry_point in the metadata (module:factory, relative to PACKAGE_DIR)")
    else:
        roots = [package_dir.joinpath(*parts), package_dir] + [d for d in package_dir.iterdir() if d.is_dir()]
        if not any((r / "__init__.py").is_file() for r in roots):
            raise ContributeError(f"{package_dir}: a medigan-1 package needs medigan's __init__.py "
                                  "(with generate(model_file, num_samples, output_path, save_images, ...))",
                                  hint="point PACKAGE_DIR at the medigan model's folder")
    weights = pkg.get("weights")
    if weights:
        root = package_dir.resolve()
        target = (root / str(weights)).resolve()
        if Path(str(weights)).is_absolute() or ".." in Path(str(weights)).parts or root not in target.parents:
            raise ContributeError(f"{package_dir}: package.weights names {weights!r}, a path outside the package "
                                  "(the zip holds only the package folder, and a site never reads outside it)",
                                  hint="put the weights inside the package folder and name them relative to it, "
                                       "e.g. \"weights.safetensors\"")
    if weights and not (package_dir / str(weights)).is_file():
        raise ContributeError(f"{package_dir}: package.weights names {weights!r}, which is not in the package",
                              hint="fix package.weights in the metadata (a path relative to PACKAGE_DIR)")


# --- the zip, its record and its test -------------------------------------------------


def zip_with_record(package_dir: Path, work: Path, meta: Mapping[str, Any], model_id: str, version: str, *,
                    package_format: str | None, entry_point: str | None,
                    progress: Callable[[str], None]) -> tuple[Path, str, int, dict[str, Any]]:
    """Zip ``package_dir`` reproducibly into ``work`` and build its provisional record (its
    sha256 and size pinned, the zip as its source), checked like any record: what both
    ``package test`` and ``contribute`` test."""
    zip_path = work / f"{model_id}-{version}.zip"
    progress(f"zipping {package_dir}")
    sha, size = reproducible_zip(package_dir, zip_path)
    progress(f"artefact {zip_path.name}: {size} bytes, sha256 {sha}")
    record = build_record(meta, model_id, version, sha256=sha, size=size, sources=[zip_path.as_uri()],
                          package_format=package_format, entry_point=entry_point)
    check_record(record, "<metadata>")
    return zip_path, sha, size, record


def test_archive(record: Mapping[str, Any], zip_path: Path, work: Path, *, timeout_s: float | None = None,
                 device: str = "cpu") -> ModelTestResult:
    """Prepare ``zip_path`` as the package of ``record`` (which pins its sha256) with the
    same checks a site applies (:func:`~.packages.prepare_archive`, into ``work``) and run
    the model test in a worker, as a site's ``synthmed test`` would."""
    rec = load_record_text(json.dumps(record), f"<contribution {record['id']}@{record['version']}>")
    package = prepare_archive(rec, zip_path, work / "packages")
    return modeltest.test_model(package, RunnerOptions(device=device, mode="worker", envs_dir=work / "envs"),
                                timeout_s=timeout_s)


# --- before anything is zipped --------------------------------------------------------

#: a stand-in digest for checking the metadata before the package is zipped
_PLACEHOLDER_SHA = "0" * 64


def preflight_record(package_dir: Path, meta: Mapping[str, Any], model_id: str, version: str, *,
                     package_format: str | None = None, entry_point: str | None = None) -> dict[str, Any]:
    """Check everything about the record that does not need the zip: the id, the version,
    the metadata merged into a full record (every problem by JSON path) and that the
    package holds its entry point and weights. Returns the provisional record."""
    if not Path(package_dir).is_dir():
        raise ContributeError(f"{package_dir}: no such package folder",
                              hint="PACKAGE_DIR is the folder with the model's code and weights")
    if not is_valid_id(model_id):
        raise ContributeError(f"{model_id!r} is not a valid model id",
                              hint="3 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    provisional = build_record(meta, model_id, version, sha256=_PLACEHOLDER_SHA, size=1,
                               sources=[Path(package_dir).resolve().as_uri() + ".zip"],
                               package_format=package_format, entry_point=entry_point)
    check_record(provisional, "<metadata>")
    check_package_contents(Path(package_dir), provisional)
    return provisional


# --- a package folder tested without a site ---------------------------------------------


@dataclass
class PackageTest:
    """What :func:`test_package_dir` found: the record it built and the model test's result."""

    record: dict[str, Any]
    sha256: str
    size: int
    result: ModelTestResult
    report: Path | None = None

    @property
    def passed(self) -> bool:
        return self.result.status == "passed"


def default_package_id(package_dir: Path) -> str:
    """A valid model id from the folder's name (for testing a package that has none yet)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", Path(package_dir).resolve().name.lower()).strip("-._")
    name = name[:64]
    return name if is_valid_id(name) else "package-under-test"


def test_package_dir(package_dir: Path | str, *, metadata: Mapping[str, Any] | Path | str | None,
                     model_id: str | None = None, version: str | None = None, package_format: str | None = None,
                     entry_point: str | None = None, timeout_s: float | None = None, report_dir: Path | None = None,
                     device: str = "cpu", progress: Callable[[str], None] = lambda m: None) -> PackageTest:
    """The model test of a package folder, without a site: the checks of :func:`contribute`
    (metadata, package contents), the same reproducible zip and record, prepared and
    tested as a site would. ``model_id``/``version`` default to the metadata's, else the
    folder's name and 0.0.0. Never raises for the model's faults (see ``result``)."""
    package_dir = Path(package_dir)
    meta = load_metadata(metadata)
    model_id = model_id or str(meta.get("id") or default_package_id(package_dir))
    version = version or str(meta.get("version") or "0.0.0")
    preflight_record(package_dir, meta, model_id, version, package_format=package_format, entry_point=entry_point)
    work = Path(tempfile.mkdtemp(prefix="synthmed-package-test-"))
    try:
        zip_path, sha, size, record = zip_with_record(package_dir, work, meta, model_id, version,
                                                      package_format=package_format, entry_point=entry_point,
                                                      progress=progress)
        progress("testing the model")
        result = test_archive(record, zip_path, work, timeout_s=timeout_s, device=device)
        report = write_report(report_dir, [result]) if report_dir else None
        return PackageTest(record=record, sha256=sha, size=size, result=result, report=report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


test_package_dir.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
test_archive.__test__ = False  # type: ignore[attr-defined]
