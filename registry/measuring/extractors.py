"""Feature extractors as index artefacts (``synthmed-extractor/1`` records).

A record at ``extractors/<id>/<version>.json`` in an index names a network that synthmed
implements (:mod:`.extractor_nets`), pins its weights file (sha256, size, sources) and
says exactly how an image is fed to it: input size, resize rule (library, filter,
antialias), channel rule, intensity mapping, and the layer read. On a site an extractor
is resolved like a model, through the upstreams by priority at their accepted commits;
its weights go through the store (hashed while they stream, like every artefact) and are
read as safetensors or with ``torch.load(weights_only=True)``: never a pickle that runs
code. A record without a ``sha256`` is unverified: it validates, and it is refused for use.

:func:`describe` is what a metric's provenance says about the extractor; every field of it
takes part in the comparability key (:mod:`.evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np

from ..errors import EvaluationError, ModelNotFound, NotPinned, Problem, RecordError
from ..packages import fetch_data
from ..records import Versioned
from ..schemas_io import validate_against
from ..semver import parse_version
from .cards import training_words
from .radiomics import RadiomicsExtractor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..catalog import Catalog
    from ..settings import Settings

log = logging.getLogger(__name__)

EXTRACTOR_FORMAT = "synthmed-extractor/1"
EXTRACTORS_DIR = "extractors"
#: the extractor `synthmed evaluate` uses when none is named: small, pinned, in this repository's index
DEFAULT_EXTRACTOR = "randconv-224"


@dataclass(frozen=True)
class ExtractorRecord(Versioned):
    data: Mapping[str, Any]
    where: str

    @property
    def family(self) -> str:
        return str(self.data["family"])

    @property
    def trained(self) -> bool:
        return bool(self.data["training"]["trained"])

    @property
    def is_radiomics(self) -> bool:
        return self.family == "radiomics"

    @property
    def sha256(self) -> str | None:
        """The pin: the weights file's sha256, or (radiomics) the sha256 of the pinned
        package versions and configuration hashes."""
        if self.is_radiomics:
            return hashlib.sha256(json.dumps(self.data["software"], sort_keys=True).encode()).hexdigest()
        v = self.data["weights"].get("sha256")
        return str(v) if v else None

    def summary(self) -> str:
        """One line every output prints: what it is, whether it is trained, and on what."""
        t = self.data["training"]
        return f"{self.ref} ({self.family} features, {training_words(t['trained'], t['data'])})"

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


def extractor_relpath(ext_id: str, version: str) -> str:
    return f"{EXTRACTORS_DIR}/{ext_id}/{version}.json"


def validate_extractor(data: Any, where: str, relpath: str | None = None) -> list[Problem]:
    """Every problem of an extractor record: its schema, then its path."""
    problems = validate_against("extractor", data, where)
    if problems or not isinstance(data, dict):
        return problems
    if relpath is not None and relpath != extractor_relpath(data["id"], data["version"]):
        problems.append(Problem(where, "$", f"an extractor record must be at "
                                            f"{extractor_relpath(data['id'], data['version'])}, not {relpath}"))
    return problems


def load_extractor_text(text: str | bytes, where: str, relpath: str | None = None) -> ExtractorRecord:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError([Problem(where, "$", f"not JSON: {exc}")], hint="fix the extractor record's JSON") from None
    problems = validate_extractor(data, where, relpath)
    if problems:
        raise RecordError(problems, hint="fix the extractor record (schemas/extractor.schema.json), then run "
                                         "`synthmed index validate`")
    return ExtractorRecord(data, where)


def load_extractor_file(path: Path) -> ExtractorRecord:
    path = Path(path)
    rel = None
    parts = path.parts
    if len(parts) >= 3 and parts[-3] == EXTRACTORS_DIR:
        rel = "/".join(parts[-3:])
    return load_extractor_text(path.read_bytes(), str(path), rel)


def validate_extractors_dir(index_dir: Path) -> list[Problem]:
    """Problems of every record under ``<index>/extractors/`` (for ``synthmed index validate``)."""
    out: list[Problem] = []
    root = Path(index_dir) / EXTRACTORS_DIR
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(index_dir).as_posix()
        if len(PurePosixPath(rel).parts) != 3 or p.suffix != ".json":
            out.append(Problem(str(p), "$", "an extractor record must be at extractors/<id>/<version>.json"))
            continue
        try:
            data = json.loads(p.read_bytes())
        except ValueError as exc:
            out.append(Problem(str(p), "$", f"not JSON: {exc}"))
            continue
        out.extend(validate_extractor(data, str(p), rel))
    return out


# -- resolving on a site -------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedExtractor:
    record: ExtractorRecord
    upstream: str | None
    index_repo: Path | None
    index_commit: str | None
    index_subfolder: str


def _parse_ref(ref: str) -> tuple[str | None, str, str | None]:
    up, _, rest = ref.rpartition("/")
    ext_id, _, version = rest.partition("@")
    return (up or None), ext_id, (version or None)


def resolve_extractor(catalog: "Catalog", ref: str) -> ResolvedExtractor:
    """``id``, ``id@version``, ``upstream/id[@version]``: read from each upstream's mirror at
    its accepted commit, by upstream priority; without a version, the highest one."""
    import git

    want_up, ext_id, version = _parse_ref(ref.strip())
    if not ext_id:
        raise EvaluationError(f"empty extractor reference {ref!r}", hint="name an extractor: ID, ID@VERSION or UPSTREAM/ID")
    rows = sorted(catalog.federation.upstream_rows(), key=lambda r: (r["priority"], r["ord"]))
    seen: list[str] = []
    for row in rows:
        if want_up and row["name"] != want_up:
            continue
        commit = row.get("accepted_commit")
        if not commit:
            continue
        repo_path = catalog.federation.repo_path(row["name"])
        sub = (row.get("subfolder") or "").strip("/")
        folder = "/".join(p for p in (sub, EXTRACTORS_DIR, ext_id) if p)
        try:
            repo = git.Repo(repo_path)
            try:
                tree = repo.commit(commit).tree / folder
                names = [b.name for b in tree.blobs if b.name.endswith(".json")]
            except KeyError:
                names = []
            versions = sorted((n[:-5] for n in names), key=lambda v: _version_key(v))
            seen.extend(f"{row['name']}/{ext_id}@{v}" for v in versions)
            pick = version if version in versions else (versions[-1] if versions and not version else None)
            if pick is None:
                continue
            blob = repo.commit(commit).tree / f"{folder}/{pick}.json"
            text = blob.data_stream.read()
        finally:
            repo.close()
        rel = f"{EXTRACTORS_DIR}/{ext_id}/{pick}.json"
        rec = load_extractor_text(text, f"{row['name']}:{rel}@{commit[:12]}", rel)
        if rec.data.get("status") == "yanked":
            raise EvaluationError(f"extractor {rec.ref} of upstream {row['name']} is yanked",
                                  hint="use another version or extractor")
        return ResolvedExtractor(rec, row["name"], repo_path, commit, sub)
    raise ModelNotFound(f"no extractor {ref!r} in this site's upstreams"
                        + (f" (found: {', '.join(seen)})" if seen else ""),
                        hint="extractor records live at extractors/<id>/<version>.json in an index; "
                             "run `synthmed sync`, or pass --extractor with a record file")


def _version_key(v: str) -> Any:
    try:
        return (1, parse_version(v))
    except Exception:
        return (0, v)


# -- weights and networks ------------------------------------------------------------------


def weights_file(resolved: ResolvedExtractor, settings: "Settings") -> Path:
    """The verified weights blob in the site's store (fetched from the record's sources
    if needed, unless the site is offline and they are not local)."""
    rec = resolved.record
    if not rec.verified:
        raise NotPinned(f"extractor {rec.ref} is unverified: its record pins no sha256 for its weights",
                         hint="pin it (download the weights file, hash it and add weights.sha256 and "
                              "weights.size to the record in a reviewed pull request); until then use "
                              f"the default extractor {DEFAULT_EXTRACTOR}")
    sha = rec.sha256
    assert sha is not None
    return fetch_data(sha, rec.data["weights"].get("size"), list(rec.data["weights"]["sources"]), settings,
                      upstream=resolved.upstream, index_repo=resolved.index_repo,
                      index_commit=resolved.index_commit, index_subfolder=resolved.index_subfolder)


def load_state_dict(path: Path, fmt: str) -> dict[str, "torch.Tensor"]:
    """safetensors, or a torch state dict read with ``weights_only=True`` (no code runs)."""
    import torch

    if fmt == "safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EvaluationError(f"cannot read the weights file {path}: {exc}",
                              hint="the file must be a plain tensor state dict (torch.save(model.state_dict()))") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EvaluationError(f"{path} is not a state dict of tensors")
    return dict(obj)


def build_network(network: str, state: Mapping[str, "torch.Tensor"], where: str) -> "torch.nn.Module":
    """The named network with ``state`` loaded: the keys must match exactly (BatchNorm's
    ``num_batches_tracked`` may be absent) and every shape must agree."""
    from .extractor_nets import NETWORKS

    if network not in NETWORKS:
        raise EvaluationError(f"{where}: unknown network {network!r}", hint=f"known: {', '.join(sorted(NETWORKS))}")
    net = NETWORKS[network]()
    own = net.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state) - optional)
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        bits = []
        if missing:
            bits.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            bits.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            bits.append(f"{len(wrong)} of another shape (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} "
                        f"instead of {tuple(own[wrong[0]].shape)})")
        raise EvaluationError(f"{where}: the weights do not fit network {network}: " + ", ".join(bits),
                              hint="the record's weights file must be the state dict of that network")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    return net.eval()


# -- preprocessing ---------------------------------------------------------------------------


def describe(rec: ExtractorRecord) -> dict[str, Any]:
    """What a measured value's provenance says about its extractor (all of it is keyed):
    what it is (family), whether it is trained and on what, and how images reach it."""
    d = rec.data
    out = {"id": rec.id, "version": rec.version, "sha256": rec.sha256, "network": d["network"],
           "family": rec.family, "training": dict(d["training"]), "layer": d["layer"], "dims": d["dims"]}
    if rec.is_radiomics:
        out["software"] = d["software"]
    else:
        out["input"] = d["input"]
    return out


def config_key(extractor: "Extractor") -> str:
    """The extractor configuration a feature array depends on (weights and input rules): the
    name of its feature caches (a reference set's, the generated sets')."""
    body = json.dumps(describe(extractor.record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def preprocess(images: np.ndarray, value_range: tuple[float, float], rule: Mapping[str, Any]) -> "torch.Tensor":
    """Images (N, H, W) or (N, H, W, C) with values in ``value_range`` -> (N, 3, h, w) float
    tensor, following the record's ``input`` rules."""
    import torch
    import torch.nn.functional as F

    a = np.asarray(images)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4:
        raise EvaluationError(f"expected 2-D images (N, H, W[, C]), got an array of shape {a.shape}",
                              hint="evaluate a 2-D image output (--output NAME); volumes are not evaluated")
    c = a.shape[-1]
    if c == 1:
        a = np.repeat(a, 3, axis=-1)
    elif c == 4:
        a = a[..., :3]
    elif c != 3:
        raise EvaluationError(f"images with {c} channels cannot be fed to an RGB extractor",
                              hint="the channel rule 'rgb' takes 1 (grey), 3 (RGB) or 4 (RGBA) channels")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise EvaluationError(f"value range {value_range} is empty")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(0, 3, 1, 2)
    x = ((x - lo) / (hi - lo)).clamp_(0.0, 1.0)
    h, w = (int(v) for v in rule["size"])
    rs = rule["resize"]
    if tuple(x.shape[2:]) != (h, w):
        kw: dict[str, Any] = {"size": (h, w), "mode": rs["filter"]}
        if rs["filter"] in ("bilinear", "bicubic"):
            kw["align_corners"] = bool(rs.get("align_corners", False))
            kw["antialias"] = bool(rs["antialias"])
        x = F.interpolate(x, **kw)
    t0, t1 = (float(v) for v in rule["intensity"]["to"])
    return x * (t1 - t0) + t0


class Extractor(Protocol):
    """What evaluate needs of a loaded extractor (a network's or radiomics)."""

    record: ExtractorRecord

    def features(self, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray: ...


class FeatureExtractor:
    """A loaded network extractor: ``features(images, value_range)`` -> (N, dims) float64."""

    def __init__(self, rec: ExtractorRecord, net: "torch.nn.Module", batch_size: int = 64) -> None:
        self.record = rec
        self.net = net
        self.batch_size = batch_size

    @classmethod
    def from_file(cls, rec: ExtractorRecord, weights: Path) -> "FeatureExtractor":
        sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        if rec.sha256 and sha != rec.sha256:
            raise EvaluationError(f"weights {weights} have sha256 {sha}, the record {rec.ref} pins {rec.sha256}",
                                  hint="use the file the record pins")
        state = load_state_dict(weights, rec.data["weights"]["format"])
        return cls(rec, build_network(rec.data["network"], state, rec.ref))

    def features(self, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = preprocess(images[i:i + self.batch_size], value_range, self.record.data["input"])
                out.append(self.net(x).double().numpy())
        f = np.concatenate(out) if out else np.zeros((0, int(self.record.data["dims"])))
        if f.shape[1] != int(self.record.data["dims"]):
            raise EvaluationError(f"extractor {self.record.ref} gave {f.shape[1]} features, its record says "
                                  f"{self.record.data['dims']}")
        return f


def open_extractor(catalog: "Catalog", settings: "Settings", ref: str | None, *,
                   workers: int | None = None) -> Extractor:
    """An extractor by reference (default :data:`DEFAULT_EXTRACTOR`), or from a record file
    (``path/to/extractors/<id>/<version>.json``) whose weights are read from its ``file:`` or
    ``index:`` source relative to the index folder holding it. A radiomics record needs no
    weights: the pinned packages must be installed (``workers`` processes extract)."""
    ref = ref or DEFAULT_EXTRACTOR
    p = Path(ref)
    if ref.endswith(".json") and p.is_file():
        rec = load_extractor_file(p)
        if rec.is_radiomics:
            return RadiomicsExtractor.open(rec, workers=workers)
        if not rec.verified:
            raise NotPinned(f"extractor {rec.ref} ({p}) is unverified: its record pins no sha256",
                             hint="pin its weights first")
        index_dir = p.resolve().parents[2]
        for src in rec.data["weights"]["sources"]:
            if src.startswith("index:"):
                return FeatureExtractor.from_file(rec, index_dir / src[len("index:"):])
        raise EvaluationError(f"{p}: a record file given directly needs an index: weights source",
                              hint="or sync the index that holds it and name the extractor by id")
    resolved = resolve_extractor(catalog, ref)
    if resolved.record.is_radiomics:
        return RadiomicsExtractor.open(resolved.record, workers=workers)
    return FeatureExtractor.from_file(resolved.record, weights_file(resolved, settings))
