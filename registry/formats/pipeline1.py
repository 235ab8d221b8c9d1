"""``synthmed-pipeline-1``: models run one after another, the outputs of earlier stages
wired to the array inputs of later ones.

A pipeline's package is an ordinary verified artefact (a zip pinned by its record, so
sync, mirror, the store and the immutability rules treat it as any package) holding one
JSON file, the record's ``entry_point`` (e.g. ``pipeline.json``)::

    {"format": "synthmed-pipeline-1",
     "stages": [{"name": "geometry", "ref": "retina-vessel-mask-dcgan@1.0.0",
                 "sha256": "<the stage record's package sha256>", "params": {}},
                {"name": "photo", "ref": "retina-vessel-pix2pix@1.0.0", "sha256": "...", "params": {}}],
     "wiring": ["geometry.mask -> photo.mask"],
     "outputs": {"mask": "geometry.mask", "image": "photo.image"}}

- A stage names a model by ``id@version`` (resolved in the pipeline's own upstream
  first, then by the site's priorities) and the sha256 of its package: the stage runs
  only if that version resolves, is not yanked, is pinned to exactly that sha256, and
  its upstream's code may run. :func:`~synthmed.registry.packages.prepare` prepares the
  stages of a pipeline it prepares for running (:meth:`Pipeline1.prepare_stages`), each
  through the same boundary as any package; a stage that cannot run is
  :class:`~synthmed.registry.errors.StageUnavailable`. A stage is never itself a pipeline.
- ``wiring`` connects an output of an earlier stage to an array input of a later one;
  every array input of every stage is wired (checked when the pipeline's runner is built,
  :mod:`synthmed.registry.pipeline`).
- ``outputs`` maps each output of the pipeline's record to a stage's output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..catalog.entry import CatalogEntry
from ..errors import ModelNotFound, ModelRunError, StageUnavailable, SynthmedError
from ..records import Record, json_depth_exceeds
from .base import LoadedModel, P, PackageFormat, PackageView, Resolve

FORMAT = "synthmed-pipeline-1"
MAX_SPEC_BYTES = 1 << 20
#: the deepest nesting of arrays and objects in a pipeline file (it needs 3)
MAX_SPEC_DEPTH = 64
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REF = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}@[0-9A-Za-z.+-]+$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_WIRE = re.compile(r"^\s*([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\s*->\s*([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\s*$")


@dataclass(frozen=True)
class Stage:
    name: str
    ref: str
    sha256: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class PipelineSpec:
    stages: tuple[Stage, ...]
    #: (source stage, output, target stage, input)
    wiring: tuple[tuple[str, str, str, str], ...]
    #: pipeline output -> (stage, output)
    outputs: Mapping[str, tuple[str, str]]


def load_spec(package: PackageView) -> PipelineSpec:
    """The pipeline file of a verified ``synthmed-pipeline-1`` package, checked for form
    (names, refs, sha256s, wiring that points forward, outputs that exist in the record)."""
    record = package.record
    ref = package.ref

    def bad(msg: str) -> ModelRunError:
        return ModelRunError(f"{ref}: pipeline {record.entry_point}: {msg}",
                             hint="the pipeline package is wrong; report it to its authors", model=ref)

    path = (package.folder / record.entry_point)
    try:
        raw = path.read_bytes()[:MAX_SPEC_BYTES + 1]
        if len(raw) > MAX_SPEC_BYTES:
            raise bad("larger than 1 MiB")
        text = raw.decode("utf-8")
        if json_depth_exceeds(text, MAX_SPEC_DEPTH):  # json.loads recurses once per level
            raise bad(f"nests arrays and objects more than {MAX_SPEC_DEPTH} levels deep")
        doc = json.loads(text)
    except ModelRunError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise bad(f"cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"is not a {FORMAT} file (its format must be {FORMAT!r})")
    stages: list[Stage] = []
    for i, st in enumerate(doc.get("stages") or []):
        if not isinstance(st, dict):
            raise bad(f"stages[{i}] is not an object")
        name, sref, sha, params = st.get("name"), st.get("ref"), st.get("sha256"), st.get("params", {})
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad(f"stages[{i}].name {name!r} is not a name (a-z, 0-9, _)")
        if any(s.name == name for s in stages):
            raise bad(f"stage {name!r} is named twice")
        if not isinstance(sref, str) or not _REF.match(sref):
            raise bad(f"stage {name!r}: ref {sref!r} is not ID@VERSION")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise bad(f"stage {name!r}: sha256 {sha!r} is not 64 hexadecimal characters")
        if not isinstance(params, dict):
            raise bad(f"stage {name!r}: params is not an object")
        stages.append(Stage(name, sref, sha, params))
    if not stages:
        raise bad("names no stages")
    order = {s.name: i for i, s in enumerate(stages)}
    wiring: list[tuple[str, str, str, str]] = []
    for w in doc.get("wiring") or []:
        m = _WIRE.match(w) if isinstance(w, str) else None
        if m is None:
            raise bad(f"wiring {w!r} is not 'stage.output -> stage.input'")
        src, out, dst, inp = m.groups()
        if src not in order or dst not in order:
            raise bad(f"wiring {w!r} names a stage the pipeline does not have")
        if order[src] >= order[dst]:
            raise bad(f"wiring {w!r} points backwards: {src!r} must come before {dst!r}")
        if any(x[2] == dst and x[3] == inp for x in wiring):
            raise bad(f"input {dst}.{inp} is wired twice")
        wiring.append((src, out, dst, inp))
    outs: dict[str, tuple[str, str]] = {}
    raw_outs = doc.get("outputs")
    if not isinstance(raw_outs, dict):
        raise bad("outputs is not an object (pipeline output -> 'stage.output')")
    for name in (str(o["name"]) for o in record.outputs):
        target = raw_outs.get(name)
        if not isinstance(target, str) or target.count(".") != 1 or target.split(".")[0] not in order:
            raise bad(f"the record's output {name!r} is not mapped to 'stage.output'")
        st, so = target.split(".")
        outs[name] = (st, so)
    return PipelineSpec(tuple(stages), tuple(wiring), outs)


def _resolve_stage(package: PackageView, ref: str, resolve: Resolve) -> CatalogEntry:
    """The stage's entry: in the pipeline's own upstream first, then by the site's priorities."""
    if package.upstream:
        try:
            return resolve(f"{package.upstream}/{ref}")
        except ModelNotFound:
            pass
    return resolve(ref)


class Pipeline1(PackageFormat):
    """The adapter of ``synthmed-pipeline-1`` packages: run as stages, each prepared
    through the package boundary and pinned to the sha256 the pipeline names."""

    name = FORMAT
    staged = True

    def load(self, record: Record, package_dir: Path, device: str, package_key: str,
             chunk: int | None = None) -> LoadedModel:
        raise ModelRunError(f"{record.ref}: a {FORMAT} package runs through its stages; it is never loaded as one "
                            "model", hint="open it through a site (Site.model), which prepares every stage",
                            model=record.ref)

    def prepare_stages(self, package: P, resolve: Resolve, prepare: Callable[[CatalogEntry], P]) -> dict[str, P]:
        """Every stage's package, each through ``prepare`` (yanked, pin and ``allow_code``
        rules; fetched if needed and allowed), and pinned to the sha256 the pipeline names.
        StageUnavailable (an Unverified, with the stage's own message) when a stage cannot run."""
        spec = load_spec(package)
        out: dict[str, P] = {}
        for st in spec.stages:
            try:
                entry = _resolve_stage(package, st.ref, resolve)
            except SynthmedError as exc:
                raise StageUnavailable(exc.message, hint=exc.hint, model=package.ref, stage=st.name) from exc
            if entry.record.sha256 != st.sha256:
                raise StageUnavailable(
                    f"{package.ref}: stage {st.name!r} names {st.ref} with package sha256 {st.sha256}, "
                    f"but {entry.qualified_ref} is pinned to {entry.record.sha256}",
                    hint="the pipeline runs only the exact stage packages it names", model=package.ref, stage=st.name)
            if entry.record.package_format == FORMAT:
                raise ModelRunError(f"{package.ref}: stage {st.name!r} is itself a pipeline; stages are models",
                                    model=package.ref)
            try:
                out[st.name] = prepare(entry)
            except SynthmedError as exc:
                raise StageUnavailable(exc.message, hint=exc.hint, model=package.ref, stage=st.name) from exc
        return out
