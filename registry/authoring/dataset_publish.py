"""Publishing a synthetic dataset: ``synthmed dataset publish DIR --id ID --version V``
(docs/datasets.md).

:func:`publish_dataset` takes a finished run folder (``synthmed dataset create``) and

1. holds it to its manifest (every file as listed, nothing else but the run's sidecar and
   lock file, the array inputs under ``inputs/`` matching the run's digest) and reads the
   run's identity from the manifest and sidecar: the model, its package sha256, seeds,
   count, parameters, outputs, file format and layout;
2. checks it against the target index's base branch with the dataset policy
   (:mod:`.dataset_policy`: the model version is there with that sha256, the outputs and
   parameters are the model's, the licence rule);
3. runs the memorisation audit on the dataset's own files against the site-local training
   set (:func:`~synthmed.registry.measuring.audit.audit_pictures`); a failing verdict, or no
   audit at all, needs ``--override-audit REASON``, kept in the record;
4. packs the folder reproducibly (:func:`~synthmed.registry.artefacts.dataset_archive.pack`),
   uploads it (the index itself, Zenodo or a DVC remote: :mod:`.contribute_stores`) and
   commits ``datasets/<id>/<version>.json`` on the new branch ``dataset/<id>-<version>`` of
   the index repository through a temporary worktree (the helpers of :mod:`.contribute`),
   then checks the branch as the index's CI would.

Everything that can refuse (the folder, the model, the licence, the audit, the record's
schema) is checked before anything is packed, uploaded or committed; a failure after the
branch was made removes the branch. The publisher's own checkout is never touched.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import dataset_records as dsr
from ..array_inputs import check_inputs, read_file
from ..artefacts import dataset_archive as da
from ..errors import ContributeError, DatasetPublishError, InputError, Problem
from ..formats.medigan1 import CHUNK_KEY, recorded_chunk
from ..hashing import hash_path
from ..measuring.audit import audit_pictures
from ..measuring.extractors import Extractor
from ..measuring.reference_sets import ReferenceSet
from ..outputs import OutputSpec, preview, record_specs, to_uint8
from ..records import Record, is_valid_id
from ..semver import parse_version
from ..settings import Settings
from ..stamps import utcnow
from . import dataset_policy
from .contribute import _Target, default_base, instructions
from .contribute_package import load_metadata
from .contribute_stores import INDEX_MAX_BYTES, check_store, locate_index, store_in_index, upload_dvc, upload_zenodo
from .indexcheck import check_index, models_at

log = logging.getLogger(__name__)

#: the fields a dataset's metadata file may give (the rest of the record is computed)
METADATA_FIELDS = ("title", "summary", "description", "license", "card", "authors", "tags")
SIDECAR = "synthmed.json"


@dataclass
class DatasetPublishResult:
    """What a publication made (the attributes :func:`.contribute.instructions` reads)."""

    ref: str
    branch: str
    commit: str
    index_repo: Path
    record_path: str
    record: dict[str, Any]
    sha256: str
    size: int
    source: str
    artefact: Path  # the packed tar (a kept temporary copy)
    instructions: str = ""
    check_warnings: list[str] = field(default_factory=list)
    extra_steps: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunFolder:
    """A finished run folder, held to its manifest, and what a record says of its run."""

    folder: Path
    manifest: Mapping[str, Any]
    manifest_sha256: str
    sidecar: Mapping[str, Any]
    model_id: str
    model_version: str
    model_sha256: str
    inputs: Mapping[str, tuple[str, int]]  # name -> (files_sha256, count)

    @classmethod
    def open(cls, folder: Path) -> "RunFolder":
        if not folder.is_dir():
            raise DatasetPublishError(f"{folder}: no such folder", hint="give the folder `synthmed dataset create` made")
        manifest = da.check_folder(folder, da.RUN_BOOKKEEPING)
        digest, _ = hash_path(folder / da.MANIFEST)
        try:
            sidecar = json.loads((folder / SIDECAR).read_text("utf-8"))
        except FileNotFoundError:
            sidecar = {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetPublishError(f"{folder / SIDECAR}: unreadable sidecar: {exc}",
                                      hint="re-create the dataset folder") from None
        run = manifest["run"]
        ref = str(run.get("model") or "").rsplit("/", 1)[-1]
        mid, _, ver = ref.partition("@")
        if not mid or not ver or not isinstance(run.get("sha256"), str) or not isinstance(run.get("seeds"), dict):
            raise DatasetPublishError(f"{folder / da.MANIFEST}: the manifest names no model version, package sha256 "
                                      "or seeds", hint="re-create the dataset with `synthmed dataset create`")
        names = sorted(p.name for p in (folder / da.INPUTS_DIR).iterdir()) if (folder / da.INPUTS_DIR).is_dir() else []
        inputs = {n: da.inputs_digest(folder, n) for n in names}
        took = "__inputs__" in (run.get("params") or {})
        if took != bool(inputs):
            raise DatasetPublishError(
                f"{folder}: " + ("the run took array inputs but the folder has no inputs/<name>/ files" if took else
                                 "inputs/ holds files, but the run took no array inputs"),
                hint="make the dataset with `synthmed dataset create`, which copies the run's inputs into inputs/")
        return cls(folder, manifest, digest, sidecar, mid, ver, str(run["sha256"]), inputs)

    def generation(self) -> dict[str, Any]:
        """The record's ``generation`` section."""
        run = self.manifest["run"]
        formats = {o.get("format") for o in self.sidecar.get("outputs") or [] if isinstance(o, dict)}
        fmt = formats.pop() if len(formats) == 1 else run.get("format")
        gen: dict[str, Any] = {
            "outputs": list(run.get("outputs") or []),
            "params": {k: v for k, v in (run.get("params") or {}).items() if k != "__inputs__"},
            "options": dict(run.get("options") or {}),
            "first_seed": run["seeds"].get("first"), "count": run.get("num_samples"),
            "file_format": fmt if fmt in ("png", "npy", "nifti", "dicom") else "auto",
            "layout": self.sidecar.get("layout", "synthmed"), "manifest_sha256": self.manifest_sha256}
        if self.inputs:
            gen["inputs"] = [{"name": n, "files_sha256": d, "count": c} for n, (d, c) in sorted(self.inputs.items())]
        runner = self.sidecar.get("runner") or {}
        device = runner.get("device")
        if isinstance(device, str):
            gen["device"] = device
        chunk = recorded_chunk(runner)
        if chunk is not None:  # a medigan-1 model: which latent a seed gets depends on it
            gen[CHUNK_KEY] = chunk
        return gen

    def check_inputs(self, model: Record) -> None:
        """The files under ``inputs/`` are the inputs the run took (the same digest)."""
        if not self.inputs:
            return
        want = self.manifest["run"]["params"]["__inputs__"]
        try:
            checked = check_inputs(model, {n: self.folder / da.INPUTS_DIR / n for n in self.inputs})
        except InputError as exc:
            raise DatasetPublishError(f"{self.folder}/inputs: {exc.message}", hint="re-create the dataset") from None
        if checked.digest() != want.get("sha256") or int(want.get("per_input", 1)) != 1:
            raise DatasetPublishError(f"{self.folder}/inputs: the files are not the array inputs the run took "
                                      "(their digest differs from the manifest's)",
                                      hint="re-create the dataset with `synthmed dataset create`")


def dataset_pictures(run: RunFolder, model: Record) -> tuple[np.ndarray, list[int], str]:
    """The dataset's own items of its first 2-D output (an image output first) as 8-bit
    pictures, as ``generate --format png`` draws them: (pictures, seeds, output name)."""
    specs = {s.name: s for s in record_specs(model)}
    two_d = [specs[o] for o in run.generation()["outputs"] if o in specs and specs[o].dims == 2]
    if not two_d:
        raise DatasetPublishError(f"{run.folder}: the dataset has no 2-D output to audit (outputs: "
                                  f"{', '.join(run.generation()['outputs'])})",
                                  hint="the memorisation audit compares 2-D images; publish with "
                                       "--override-audit REASON saying why no audit applies")
    spec = next((s for s in two_d if s.kind == "image"), two_d[0])
    files = sorted(rel for rel in run.manifest["files"] if rel.startswith(f"{spec.name}/"))
    pictures = [_picture(run.folder / rel, spec) for rel in files]
    first = int(run.manifest["run"]["seeds"]["first"])
    return np.stack(pictures), [first + i for i in range(len(pictures))], spec.name


def _picture(path: Path, spec: OutputSpec) -> np.ndarray:
    try:
        a = read_file(path)
    except (ValueError, OSError) as exc:
        raise DatasetPublishError(f"{path}: cannot be read for the audit: {exc}",
                                  hint="audit a dataset of PNG, .npy, NIfTI or DICOM files") from None
    if path.suffix == ".png":  # the picture generate wrote (window applied); 16 bits: its full range
        return a if a.dtype == np.uint8 else to_uint8(a, (0, 65535))
    return preview(a, spec)


def _audit(run: RunFolder, model: Record, training: ReferenceSet | None, holdout: ReferenceSet | None,
           extractor: Extractor | None, override: str | None, progress: Callable[[str], None]) -> dict[str, Any]:
    """The record's ``audit``: run on the dataset's own files, or ``not-run``; refuses a
    failing or missing audit without ``override``."""
    if training is None:
        return _not_run(override)
    assert extractor is not None
    pictures, seeds, output = dataset_pictures(run, model)
    progress(f"audit: {len(pictures)} items of {output} against {training.label}")
    audit = audit_pictures(pictures, seeds, training, extractor, holdout=holdout, progress=progress)
    progress(f"audit: {audit['verdict']}" + "".join(f"\n  - {r}" for r in audit["reasons"]))
    if audit["verdict"] == "fail":
        if not override:
            raise DatasetPublishError(
                f"the memorisation audit of the dataset FAILED against {training.label}: " + "; ".join(audit["reasons"]),
                hint="the dataset holds near-copies of training images: do not publish it; if you are sure it may "
                     "be published anyway, pass --override-audit REASON (kept in the record)")
        audit["override"] = override
    elif override:
        audit["override"] = override
    return audit


def _not_run(override: str | None) -> dict[str, Any]:
    """The audit of a dataset published without one: refused unless overridden."""
    if not override:
        raise DatasetPublishError("no memorisation audit: publishing needs --training NAME|DIR (the model's "
                                  "training images on this site), or --override-audit REASON",
                                  hint="audit against the training set; without one, say why in the override")
    return {"verdict": "not-run", "override": override}


def build_dataset_record(meta: Mapping[str, Any], dataset_id: str, version: str, run: RunFolder,
                         model: Mapping[str, Any], audit: Mapping[str, Any], artefact: Mapping[str, Any],
                         override_licence: str | None) -> dict[str, Any]:
    """The record: the metadata, the run, the model's search fields, the artefact and audit."""
    tags = list(dict.fromkeys(str(t) for t in [*(model.get("tags") or []), *(meta.get("tags") or [])]))
    search = {key: list(model[key]) for key in ("modality", "anatomy") if model.get(key)}
    fmt = (model.get("package") or {}).get("format")
    record: dict[str, Any] = {
        "format": dsr.DATASET_FORMAT, "id": dataset_id, "version": version, "title": meta.get("title"),
        "summary": meta.get("summary"), **({"description": meta["description"]} if meta.get("description") else {}),
        "status": "active", **search, **({"tags": tags} if tags else {}),
        "model": {"id": run.model_id, "version": run.model_version, "sha256": run.model_sha256,
                  **({"package_format": fmt} if fmt else {})},
        "generation": run.generation(), "artefact": dict(artefact),
        "license": meta.get("license") or model.get("license") or "NOASSERTION",
        **({"license_override": override_licence} if override_licence else {}),
        "audit": dict(audit), "card": meta.get("card"), "authors": meta.get("authors"), "created": utcnow()}
    return record


def _metadata(metadata: Mapping[str, Any] | Path | str | None) -> dict[str, Any]:
    try:
        meta = load_metadata(metadata)
    except ContributeError as exc:
        raise DatasetPublishError(exc.message.replace("a contribution", "a dataset"),
                                  hint="write title, summary, card {intended_use, limitations}, authors (and "
                                       "optionally description, license, tags) into a JSON file; docs/datasets.md"
                                  ) from None
    unknown = sorted(set(meta) - set(METADATA_FIELDS) - {"$schema"})
    if unknown:
        raise DatasetPublishError(f"the metadata has field(s) a dataset's metadata does not take: {', '.join(unknown)}",
                                  hint=f"give only {', '.join(METADATA_FIELDS)}; the rest of the record is computed "
                                       "from the run folder and the model")
    return meta


def _refuse(problems: list[Problem], what: str) -> None:
    if problems:
        raise DatasetPublishError(f"{what}:\n" + "\n".join(f"  - {p.json_path}: {p.message}" for p in problems),
                                  hint="fix the dataset folder, the metadata or the flags; nothing was committed")


def _check_names(dataset_id: str, version: str) -> None:
    if not is_valid_id(dataset_id):
        raise DatasetPublishError(f"--id {dataset_id!r} is not a valid dataset id",
                                  hint="3 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    try:
        parse_version(version)
    except ValueError as exc:
        raise DatasetPublishError(f"--version {version!r}: {exc}", hint="e.g. --version 1.0.0") from None


@dataclass(frozen=True)
class _Checked:
    """A dataset that passed every check before packing: its draft record and where it goes."""

    run: RunFolder
    draft: dict[str, Any]
    target: _Target
    base: str
    repo: Any
    loc: Any
    warnings: list[str]


def check_publication(folder: Path, meta: Mapping[str, Any], dataset_id: str, version: str, *, index: Path,
                      base: str | None, training: ReferenceSet | None, holdout: ReferenceSet | None,
                      extractor: Extractor | None, override_audit: str | None, override_licence: str | None,
                      progress: Callable[[str], None]) -> _Checked:
    """Every check before anything is packed: the folder, the index's base branch (the
    version not there yet, the branch free), the model, the licence, the audit, the schema."""
    import git

    _check_names(dataset_id, version)
    for flag, reason in (("--override-audit", override_audit), ("--override-licence", override_licence)):
        if reason is not None and len(reason.strip()) < 3:
            raise DatasetPublishError(f"{flag} {reason!r}: say why, in a few words",
                                      hint="the reason is kept in the record for its reviewers and readers")
    if training is None:  # refused before the folder is hashed
        _not_run(override_audit)
    run = RunFolder.open(Path(folder))
    loc = locate_index(Path(index))
    repo = git.Repo(loc.repo_root)
    base = base or default_base(repo)
    relpath = loc.rel(dsr.dataset_relpath(dataset_id, version))
    target = _Target.at(repo, loc, base, relpath, f"dataset/{dataset_id}-{version}", f"dataset {dataset_id}@{version}",
                        "publish")
    models = models_at(repo.commit(target.base_commit), loc.rel("models") + "/")
    model_data = models(run.model_id, run.model_version) or {}
    artefact = {"sha256": "0" * 64, "size": 1, "media_type": da.MEDIA_TYPE,
                "sources": [f"index:artefacts/datasets/{dataset_id}/{version}.tar"]}
    draft = build_dataset_record(meta, dataset_id, version, run, model_data, {"verdict": "pass"}, artefact,
                                 override_licence)
    where = f"{dataset_id}@{version}"
    _refuse([Problem(where, jp, m) for jp, m in dataset_policy.model_findings(draft, models)],
            f"{where}: the dataset does not agree with its model in {loc.repo_root} ({base})")
    model = Record(data=model_data, path=f"{run.model_id}@{run.model_version}")
    run.check_inputs(model)
    errors, warnings = dataset_policy.licence_findings(draft["license"], model_data, override_licence)
    _refuse([Problem(where, "$.license", m) for m in errors], f"{where}: the licence rule refuses the dataset")
    draft["audit"] = _audit(run, model, training, holdout, extractor, override_audit, progress)
    _refuse(dsr.validate_dataset_data(draft, where, relpath), f"{where}: the dataset record is not valid")
    return _Checked(run, draft, target, base, repo, loc, warnings)


def publish_dataset(folder: Path | str, *, dataset_id: str, version: str,
                    metadata: Mapping[str, Any] | Path | str | None, index: Path | str = ".", store: str = "index",
                    base: str | None = None, settings: Settings | None = None,
                    training: ReferenceSet | None = None, holdout: ReferenceSet | None = None,
                    extractor: Extractor | None = None, override_audit: str | None = None,
                    override_licence: str | None = None, zenodo_host: str | None = None,
                    zenodo_token_value: str | None = None, zenodo_token_file: Path | None = None,
                    dvc_repo: Path | None = None, dvc_remote: str | None = None, dvc_path: str | None = None,
                    dvc_url: str | None = None, index_max_bytes: int = INDEX_MAX_BYTES,
                    progress: Callable[[str], None] = lambda m: None) -> DatasetPublishResult:
    """Publish one dataset version; see the module's docstring for the steps."""
    meta = _metadata(metadata)
    token = check_store(store, settings=settings, zenodo_token_value=zenodo_token_value,
                        zenodo_token_file=zenodo_token_file, dvc_repo=dvc_repo, zenodo_host=zenodo_host)
    c = check_publication(Path(folder), meta, dataset_id, version, index=Path(index), base=base, training=training,
                          holdout=holdout, extractor=extractor, override_audit=override_audit,
                          override_licence=override_licence, progress=progress)
    work = Path(tempfile.mkdtemp(prefix="synthmed-dataset-"))
    try:
        tar = work / f"{dataset_id}-{version}.tar"
        progress(f"packing {c.run.folder}")
        sha, size = da.pack(c.run.folder, tar)
        c.draft["artefact"].update(sha256=sha, size=size)

        def upload(worktree: Path) -> tuple[str, list[str]]:
            if store == "zenodo":
                assert token is not None
                host = zenodo_host or (settings.sources.zenodo_host if settings else "https://zenodo.org")
                progress(f"uploading to Zenodo at {host}")
                return upload_zenodo(tar, c.draft, host=host, token=token, upload_type="dataset"), []
            if store == "dvc":
                assert dvc_repo is not None
                progress(f"adding to DVC in {dvc_repo} and pushing")
                return upload_dvc(tar, dataset_id, version, dvc_repo=Path(dvc_repo), remote=dvc_remote,
                                  path=dvc_path or f"datasets/{dataset_id}/{version}.tar", url=dvc_url), []
            source, added = store_in_index(tar, dataset_id, version, worktree, c.loc, index_max_bytes,
                                           rel=f"artefacts/datasets/{dataset_id}/{version}.tar")
            return source, [added]

        def make_record(source: str) -> dict[str, Any]:
            progress(f"artefact source: {source}")
            record = {**c.draft, "artefact": {**c.draft["artefact"], "sources": [source]}}
            _refuse(dsr.validate_dataset_data(record, c.target.relpath, c.target.relpath),
                    f"{dataset_id}@{version}: the dataset record is not valid")
            return record

        commit, source, record = c.target.commit(
            work / "worktree", upload, make_record,
            f"Add dataset {dataset_id} {version} (synthmed dataset publish, store: {store})\n\n"
            f"made by {c.run.model_id}@{c.run.model_version}; artefact sha256 {sha}, {size} bytes; "
            f"audit {record_verdict(c.draft)}\n")
        check = check_index(c.loc.repo_root, c.target.base_commit, commit, c.loc.subfolder or None)
        if not check.ok:
            raise DatasetPublishError(f"the branch {c.target.branch} does not pass the index check:\n{check.summary()}",
                                      hint="fix the metadata or the folder and publish again")
        kept = Path(tempfile.gettempdir()) / f"synthmed-dataset-{dataset_id}-{version}-{sha[:12]}.tar"
        shutil.copyfile(tar, kept)
        result = DatasetPublishResult(
            ref=f"{dataset_id}@{version}", branch=c.target.branch, commit=commit, index_repo=c.loc.repo_root,
            record_path=c.target.relpath, record=record, sha256=sha, size=size, source=source, artefact=kept,
            check_warnings=[str(w) for w in check.warnings])
        if store == "dvc" and dvc_repo is not None:
            result.extra_steps.append(f"git -C {Path(dvc_repo).resolve()} push   # the commit holding the .dvc file "
                                      "(the artefact itself is already on the DVC remote)")
        result.instructions = instructions(c.repo, result, c.base)
        return result
    except BaseException:
        if c.target.branch in [h.name for h in c.repo.heads]:
            c.repo.git.branch("-D", c.target.branch)
            log.info("removed the branch %s after the failed publication", c.target.branch)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def record_verdict(record: Mapping[str, Any]) -> str:
    audit = record.get("audit") or {}
    return str(audit.get("verdict")) + (" (overridden)" if audit.get("override") else "")
