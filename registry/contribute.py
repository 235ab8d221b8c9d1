"""Contributing a model: package, test, upload, record, branch.

:func:`contribute` takes a package folder and a metadata JSON (the record's descriptive
fields), and

1. validates the metadata merged with the computed fields into a full record;
2. zips the package reproducibly (sorted entries, fixed timestamps and modes), hashes it;
3. unpacks that zip safely and runs the model test on it (a failing test stops here);
4. uploads the artefact: to Zenodo (zenodo-client, host configurable, token from
   ``SYNTHMED_ZENODO_TOKEN`` or a token file, never printed or written into a record),
   to a DVC remote (``dvc add`` + ``dvc push`` in a DVC-enabled git repository), or into the
   index itself (small files: ``index:artefacts/<id>/<version>.zip``);
5. writes the record (sha256 and size pinned) and commits it on a new branch
   ``contribute/<id>-<version>`` of the index repository, in a temporary git worktree, so
   the contributor's own checkout is left as it was;
6. checks the branch as the index's CI would (``synthmed index check --base <base>``), and
   says what to push and how to open the pull request.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import modeltest
from .errors import ContributeError
from .hashing import hash_path
from .indexcheck import check_index
from .packages import prepare_archive
from .records import is_valid_id, load_record_text, record_relpath, validate_data
from .report import ModelTestResult, write_report
from .runner import RunnerOptions
from .settings import Settings, zenodo_token_sources

log = logging.getLogger(__name__)

STORES = ("zenodo", "dvc", "index")
#: the largest artefact kept in the index repository itself (git is no blob store)
INDEX_MAX_BYTES = 5 * 1024 * 1024
#: a fixed timestamp for every zip entry (the zip epoch), so the same files give the same bytes
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIP_NAMES = {"__pycache__", ".git", ".dvc", ".DS_Store", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")
TOKEN_ENV = "SYNTHMED_ZENODO_TOKEN"


@dataclass
class ContributeResult:
    """What a contribution made."""

    ref: str
    branch: str
    commit: str
    index_repo: Path
    record_path: str  # inside the index repository
    record: dict[str, Any]
    sha256: str
    size: int
    source: str
    artefact: Path  # the reproducible zip (a temporary copy)
    test_status: str
    test_report: Path | None = None
    instructions: str = ""
    check_warnings: list[str] = field(default_factory=list)
    #: what else must be pushed before the pull request is useful (e.g. the DVC repository)
    extra_steps: list[str] = field(default_factory=list)


# --- packaging ------------------------------------------------------------------------


def package_files(package_dir: Path) -> list[Path]:
    """The package's files, sorted, without caches, VCS folders, links and byte code."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                continue
            if p.is_symlink():
                raise ContributeError(f"{p}: the package holds a symbolic link; packages may hold only plain files",
                                      hint="replace the link by the file it points to")
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
    if weights and not (package_dir / str(weights)).is_file():
        raise ContributeError(f"{package_dir}: package.weights names {weights!r}, which is not in the package",
                              hint="fix package.weights in the metadata (a path relative to PACKAGE_DIR)")


# --- the index repository -------------------------------------------------------------


@dataclass
class IndexLocation:
    repo_root: Path
    subfolder: str  # "" or e.g. "index"

    def rel(self, path: str) -> str:
        return f"{self.subfolder}/{path}" if self.subfolder else path


def locate_index(index: Path) -> IndexLocation:
    import git

    index = Path(index).resolve()
    try:
        repo = git.Repo(index, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ContributeError(f"{index}: not inside a git repository",
                              hint="pass --index with a clone of the index repository (the folder holding models/)"
                              ) from None
    root = Path(repo.working_tree_dir or index).resolve()
    sub = index.relative_to(root).as_posix()
    sub = "" if sub == "." else sub
    if not sub and not (root / "models").is_dir() and (root / "index" / "models").is_dir():
        sub = "index"
    return IndexLocation(root, sub)


# --- uploads --------------------------------------------------------------------------


def zenodo_token(explicit: str | None, settings: Settings | None, token_file: Path | None,
                 environ: Mapping[str, str] | None = None) -> str:
    """The Zenodo token: explicit > settings (``SYNTHMED_ZENODO_TOKEN``) > the environment >
    a token file (``--zenodo-token-file``, ``SYNTHMED_ZENODO_TOKEN_FILE`` or
    ``~/.config/synthmed/zenodo-token``)."""
    if explicit:
        return explicit
    if settings is not None and settings.sources.zenodo_token:
        return settings.sources.zenodo_token
    env = zenodo_token_sources(environ)
    if env.token:
        return env.token
    candidates = [token_file] if token_file else []
    if env.token_file:
        candidates.append(env.token_file)
    candidates.append(env.default_token_file)
    for c in candidates:
        if c and c.is_file():
            text = c.read_text("utf-8").strip()
            if text:
                return text
    raise ContributeError("no Zenodo token: uploading to Zenodo needs a personal access token",
                          hint=f"set {TOKEN_ENV}, or write the token into a file and pass --zenodo-token-file "
                               "(or put it in ~/.config/synthmed/zenodo-token)")


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def zenodo_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    creators = [{"name": a["name"], **({"affiliation": a["affiliation"]} if a.get("affiliation") else {})}
                for a in record.get("authors") or []] or [{"name": "synthmed contributor"}]
    return {"metadata": {
        "title": f"{record.get('title', record['id'])} ({record['id']} {record['version']})",
        "upload_type": "software",
        "description": str(record.get("description") or record.get("summary") or record["id"]),
        "creators": creators,
        "version": record["version"],
        "keywords": ["synthmed", "generative model", *[str(x) for x in record.get("modality", [])]],
    }}


def upload_zenodo(zip_path: Path, record: Mapping[str, Any], *, host: str, token: str) -> str:
    """Create a deposition, upload the zip to its bucket, publish; ``zenodo:<record-id>/<file>``."""
    import requests
    from zenodo_client import Zenodo

    z = Zenodo(access_token=token)
    base = host.rstrip("/")
    z.base = base
    z.api_base = base + "/api"
    z.depositions_base = z.api_base + "/deposit/depositions"
    try:
        res = z.create(zenodo_metadata(record), [str(zip_path)], publish=False)
        dep = res.json()
        pub = z.publish(str(dep["id"]), sleep=False).json()
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ContributeError(f"uploading {zip_path.name} to Zenodo at {z.api_base} failed: "
                              f"{_redact(f'{type(exc).__name__}: {exc}', token)}",
                              hint="check the Zenodo host (--zenodo-host / SYNTHMED_ZENODO_HOST) and that the token "
                                   "may create depositions (scope deposit:write, deposit:actions)") from None
    record_id = pub.get("record_id") or pub.get("id") or dep["id"]
    return f"zenodo:{record_id}/{zip_path.name}"


def _run(cmd: list[str], cwd: Path, what: str, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=dict(env) if env else None)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ContributeError(f"{what} failed in {cwd} (exit {proc.returncode}):\n  {tail}",
                              hint="fix the DVC repository or remote named above, then run contribute again")
    return proc.stdout


def open_dvc_repo(dvc_repo: Path) -> tuple[Any, Path]:
    """``(git repo, working tree)`` of ``--dvc-repo``, or ContributeError when it is not a git
    repository with a ``.dvc`` folder and nothing staged (synthmed commits there). Checked
    before anything is zipped, and again when uploading."""
    import git

    try:
        repo = git.Repo(dvc_repo, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ContributeError(f"{dvc_repo}: not a git repository",
                              hint="pass --dvc-repo with a DVC-enabled git repository") from None
    root = Path(repo.working_tree_dir or dvc_repo)
    if not (root / ".dvc").is_dir():
        raise ContributeError(f"{root}: not a DVC repository (no .dvc folder)",
                              hint="run `dvc init` and `dvc remote add -d NAME URL` there first")
    if repo.is_dirty(index=True, working_tree=False):
        raise ContributeError(f"{root}: the DVC repository has staged changes; synthmed would commit them too",
                              hint="commit or unstage them first (`git -C ... status`)")
    return repo, root


def upload_dvc(zip_path: Path, model_id: str, version: str, *, dvc_repo: Path, remote: str | None,
               path: str | None, url: str | None) -> str:
    """Track the zip with DVC in ``dvc_repo``, commit, ``dvc push``; ``dvc:<url>#<path>@<rev>``."""
    repo, root = open_dvc_repo(dvc_repo)
    rel = path or f"artefacts/{model_id}/{version}.zip"
    target = root / rel
    if target.exists():
        raise ContributeError(f"{target} already exists in the DVC repository",
                              hint="pick another --dvc-path, or another version")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, target)
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["add", rel], root, "dvc add")
    to_add = [f"{rel}.dvc"]
    gi = (target.parent / ".gitignore")
    if gi.exists():
        to_add.append(gi.relative_to(root).as_posix())
    repo.index.add(to_add)
    repo.index.commit(f"Add {model_id} {version} artefact (synthmed contribute)")
    rev = repo.head.commit.hexsha
    _run(dvc + ["push", rel] + (["-r", remote] if remote else []), root, "dvc push")
    if url is None:
        try:
            url = next(iter(repo.remote("origin").urls))
        except (ValueError, StopIteration):
            url = str(root)
    return f"dvc:{url}#{rel}@{rev}"


def store_in_index(zip_path: Path, model_id: str, version: str, worktree: Path, loc: IndexLocation,
                   max_bytes: int) -> tuple[str, str]:
    size = zip_path.stat().st_size
    if size > max_bytes:
        raise ContributeError(f"the artefact is {size} bytes; the index keeps artefacts of at most {max_bytes} bytes",
                              hint="use --store zenodo or --store dvc for large packages")
    rel = f"artefacts/{model_id}/{version}.zip"
    dest = worktree / loc.rel(rel)
    if dest.exists():
        raise ContributeError(f"{loc.rel(rel)} already exists in the index", hint="contribute a new version")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, dest)
    return f"index:{rel}", loc.rel(rel)


# --- the whole flow -------------------------------------------------------------------


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


def _test_package(record: dict[str, Any], zip_path: Path, sha: str, work: Path, timeout_s: float | None,
                  report_dir: Path | None, device: str) -> tuple[str, str | None, Path | None]:
    result = test_archive(record, zip_path, work, timeout_s=timeout_s, device=device)
    report = write_report(report_dir, [result]) if report_dir else None
    if result.status != "passed":
        raise ContributeError(
            f"{result.ref}: the model test {result.status}: {result.reason}",
            hint="fix the package or the record's outputs/test fields, then contribute again"
                 + (f"; the report is in {report.parent}" if report else ""), test_status=result.status)
    return result.status, result.reason, report


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


def check_store(store: str, *, settings: Settings | None = None, zenodo_token_value: str | None = None,
                zenodo_token_file: Path | None = None, dvc_repo: Path | None = None,
                zenodo_host: str | None = None) -> str | None:
    """The store's flags and credentials, checked before anything is zipped or tested:
    a Zenodo token that can be found (returned), a DVC repository that is a git repository
    with a ``.dvc`` folder and nothing staged."""
    if store not in STORES:
        raise ContributeError(f"unknown store {store!r}", hint=f"use one of {', '.join(STORES)}")
    if store == "zenodo":
        if zenodo_host is not None and not re.match(r"^https?://[^/\s]+", zenodo_host):
            raise ContributeError(f"--zenodo-host {zenodo_host!r} is not an http(s) URL",
                                  hint="pass the Zenodo server's base URL, e.g. https://zenodo.org or https://sandbox.zenodo.org")
        if zenodo_token_file is not None and not Path(zenodo_token_file).is_file():
            raise ContributeError(f"{zenodo_token_file}: Zenodo token file not found",
                                  hint="check the --zenodo-token-file path")
        return zenodo_token(zenodo_token_value, settings, zenodo_token_file)
    if store == "dvc":
        if dvc_repo is None:
            raise ContributeError("--store dvc needs --dvc-repo (a DVC-enabled git repository with a remote)")
        if not Path(dvc_repo).is_dir():
            raise ContributeError(f"{dvc_repo}: no such folder", hint="pass --dvc-repo with a DVC-enabled git repository")
        open_dvc_repo(dvc_repo)
    return None


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


def _default_base(repo: Any) -> str:
    for name in ("main", "master"):
        if name in [h.name for h in repo.heads]:
            return name
    return str(repo.active_branch.name)


def contribute(package_dir: Path | str, *, model_id: str, version: str, metadata: Mapping[str, Any] | Path | str | None,
               index: Path | str = ".", store: str = "index", base: str | None = None,
               settings: Settings | None = None, package_format: str | None = None,
               entry_point: str | None = None, zenodo_host: str | None = None, zenodo_token_value: str | None = None,
               zenodo_token_file: Path | None = None, dvc_repo: Path | None = None, dvc_remote: str | None = None,
               dvc_path: str | None = None, dvc_url: str | None = None, timeout_s: float | None = None,
               report_dir: Path | None = None, index_max_bytes: int = INDEX_MAX_BYTES, device: str = "cpu",
               progress: Callable[[str], None] = lambda m: None) -> ContributeResult:
    """Contribute one model version; see the module's docstring for the steps."""
    import git

    package_dir = Path(package_dir)
    # everything that can be checked without the zip is checked before it is made: flags,
    # metadata, package contents, the index and the version, the store's credentials
    meta = load_metadata(metadata)
    preflight_record(package_dir, meta, model_id, version, package_format=package_format, entry_point=entry_point)
    token = check_store(store, settings=settings, zenodo_token_value=zenodo_token_value,
                        zenodo_token_file=zenodo_token_file, dvc_repo=dvc_repo, zenodo_host=zenodo_host)
    loc = locate_index(Path(index))
    repo = git.Repo(loc.repo_root)
    base = base or _default_base(repo)
    try:
        base_commit = repo.commit(base)
    except (git.BadName, ValueError):
        raise ContributeError(f"{loc.repo_root}: no branch or commit {base!r}", hint="pass --base with the index's main branch") from None
    relpath = loc.rel(record_relpath(model_id, version))
    try:
        base_commit.tree[relpath]
        raise ContributeError(f"{model_id}@{version} already exists in the index at {relpath} ({base})",
                              hint="a merged version never changes: contribute a new version")
    except KeyError:
        pass
    branch = f"contribute/{model_id}-{version}"
    if branch in [h.name for h in repo.heads]:
        raise ContributeError(f"{loc.repo_root}: branch {branch} already exists",
                              hint=f"delete it (`git branch -D {branch}`) to contribute again")
    work = Path(tempfile.mkdtemp(prefix="synthmed-contribute-"))
    try:
        zip_path, sha, size, provisional = zip_with_record(package_dir, work, meta, model_id, version,
                                                           package_format=package_format,
                                                           entry_point=entry_point, progress=progress)
        check_package_contents(package_dir, provisional)
        progress("testing the model")
        status, _reason, report = _test_package(provisional, zip_path, sha, work, timeout_s, report_dir, device)
        progress(f"model test {status}")

        worktree = work / "worktree"
        repo.git.worktree("add", "--quiet", "-b", branch, str(worktree), base_commit.hexsha)
        try:
            to_add: list[str] = []
            if store == "zenodo":
                assert token is not None
                host = zenodo_host or (settings.sources.zenodo_host if settings else "https://zenodo.org")
                progress(f"uploading to Zenodo at {host}")
                source = upload_zenodo(zip_path, provisional, host=host, token=token)
            elif store == "dvc":
                assert dvc_repo is not None
                progress(f"adding to DVC in {dvc_repo} and pushing")
                source = upload_dvc(zip_path, model_id, version, dvc_repo=Path(dvc_repo), remote=dvc_remote,
                                    path=dvc_path, url=dvc_url)
            else:
                source, added = store_in_index(zip_path, model_id, version, worktree, loc, index_max_bytes)
                to_add.append(added)
            progress(f"artefact source: {source}")
            record = build_record(meta, model_id, version, sha256=sha, size=size, sources=[source],
                                  package_format=package_format, entry_point=entry_point)
            check_record(record, relpath)
            dest = worktree / relpath
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
            to_add.append(relpath)
            wt = git.Repo(worktree)
            wt.index.add(to_add)
            commit = wt.index.commit(f"Add {model_id} {version} (synthmed contribute, store: {store})\n\n"
                                     f"artefact sha256 {sha}, {size} bytes\nsource {source}\n")
        finally:
            repo.git.worktree("remove", "--force", str(worktree))
        check = check_index(loc.repo_root, base_commit.hexsha, commit.hexsha, loc.subfolder or None)
        if not check.ok:
            raise ContributeError(f"the branch {branch} does not pass the index check:\n{check.summary()}",
                                  hint=f"fix the record, delete the branch (`git branch -D {branch}`) and retry")
        kept = Path(tempfile.gettempdir()) / f"synthmed-{model_id}-{version}-{sha[:12]}.zip"
        shutil.copyfile(zip_path, kept)
        result = ContributeResult(
            ref=f"{model_id}@{version}", branch=branch, commit=commit.hexsha, index_repo=loc.repo_root,
            record_path=relpath, record=record, sha256=sha, size=size, source=source, artefact=kept,
            test_status=status, test_report=report, check_warnings=[str(w) for w in check.warnings])
        if store == "dvc" and dvc_repo is not None:
            result.extra_steps.append(f"git -C {Path(dvc_repo).resolve()} push   # the commit holding the .dvc file "
                                      "(the artefact itself is already on the DVC remote)")
        result.instructions = instructions(repo, result, base)
        return result
    except BaseException:
        if branch in [h.name for h in repo.heads]:
            repo.git.branch("-D", branch)
            log.info("removed the branch %s after the failed contribution", branch)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pr_url(remote_url: str, base: str, branch: str) -> str | None:
    m = re.match(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+)/(.+?)(?:\.git)?/?$",
                 remote_url)
    if not m:
        return None
    return f"https://github.com/{m.group(1)}/{m.group(2)}/compare/{base}...{branch}?expand=1"


def instructions(repo: Any, result: ContributeResult, base: str) -> str:
    try:
        remote = repo.remote("origin")
        url = next(iter(remote.urls))
    except (ValueError, StopIteration):
        url = None
    lines = [f"committed {result.ref} on branch {result.branch} ({result.commit[:12]}) of {result.index_repo}",
             f"  record:   {result.record_path}",
             f"  artefact: {result.source} (sha256 {result.sha256}, {result.size} bytes)",
             "next:"]
    lines += [f"  {step}" for step in result.extra_steps]
    lines.append(f"  git -C {result.index_repo} push {'origin' if url else '<remote>'} {result.branch}")
    pr = _pr_url(url, base, result.branch) if url else None
    if pr:
        lines.append(f"  then open the pull request: {pr}")
    else:
        lines.append(f"  then open a pull request from {result.branch} into {base} of the index repository; "
                     f"its CI runs `synthmed index check --base origin/{base}`")
    return "\n".join(lines)
