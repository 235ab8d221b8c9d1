"""Pipelines (package format ``synthmed-pipeline-1``): models run one after another, the
outputs of earlier stages wired to the array inputs of later ones.

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
  its upstream's code may run (the same :func:`~synthmed.registry.packages.prepare`
  every model goes through). A stage is never itself a pipeline.
- ``wiring`` connects an output of an earlier stage to an array input of a later one;
  every array input of every stage is wired. What crosses is checked against the
  target's ``array_inputs`` like any input (:mod:`.array_inputs`).
- ``outputs`` maps each output of the pipeline's record to a stage's output: keeping
  outputs of several stages gives, e.g., the image+mask pair.
- **Seeds.** The sample of seed ``s`` runs stage ``name`` with seed
  :func:`stage_seed` ``(s, name)``: the first 4 bytes (big-endian) of
  ``sha256("synthmed-pipeline-1:<s>:<name>")``, an integer in 0 .. 2**32-1. Stages get
  unrelated seeds, and a sample depends only on its own seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .catalog import Catalog
from .errors import InputError, ModelRunError, ModelNotFound, Unverified
from .array_inputs import check_inputs
from .packages import VerifiedPackage, prepare
from .runner import Runner, RunnerOptions
from .settings import Settings

log = logging.getLogger(__name__)

FORMAT = "synthmed-pipeline-1"
MAX_SPEC_BYTES = 1 << 20
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REF = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}@[0-9A-Za-z.+-]+$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_WIRE = re.compile(r"^\s*([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\s*->\s*([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\s*$")


def stage_seed(seed: int, stage: str) -> int:
    """The seed stage ``stage`` runs with for the pipeline sample of seed ``seed``."""
    digest = hashlib.sha256(f"{FORMAT}:{int(seed)}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


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


def load_spec(package: VerifiedPackage) -> PipelineSpec:
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
        doc = json.loads(raw.decode("utf-8"))
    except ModelRunError:
        raise
    except (OSError, ValueError) as exc:
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


def prepare_stages(package: VerifiedPackage, settings: Settings) -> dict[str, VerifiedPackage]:
    """Every stage's verified package, each through :func:`prepare` (yanked, pin and
    ``allow_code`` rules; fetched if needed and allowed), and pinned to the sha256 the
    pipeline names. Unverified when a stage cannot run."""
    spec = load_spec(package)
    out: dict[str, VerifiedPackage] = {}
    with Catalog.open(settings.catalog_path, readonly=True) as catalog:
        for st in spec.stages:
            entry = None
            if package.upstream:
                try:
                    entry = catalog.models.resolve(f"{package.upstream}/{st.ref}")
                except ModelNotFound:
                    entry = None
            if entry is None:
                entry = catalog.models.resolve(st.ref)
            if entry.record.sha256 != st.sha256:
                raise Unverified(f"{package.ref}: stage {st.name!r} names {st.ref} with package sha256 {st.sha256}, "
                                 f"but {entry.qualified_ref} is pinned to {entry.record.sha256}",
                                 hint="the pipeline runs only the exact stage packages it names", model=package.ref)
            out[st.name] = prepare(entry, settings)
    return out


class PipelineRunner(Runner):
    """Runs a pipeline: the stages' runners one after another per batch of seeds. Built
    from the pipeline's verified package and each stage's (:func:`prepare_stages`)."""

    def __init__(self, package: VerifiedPackage, stages: Mapping[str, VerifiedPackage],
                 options: RunnerOptions | None = None, **overrides: Any) -> None:
        super().__init__(package, options, **overrides)
        self.spec = spec = load_spec(package)
        self.stage_runners: dict[str, Runner] = {}
        for st in spec.stages:
            stage_package = stages.get(st.name)
            if stage_package is None:
                raise Unverified(f"{package.ref}: stage {st.name!r} ({st.ref}) was not prepared", model=package.ref)
            if stage_package.sha256 != st.sha256:
                raise Unverified(f"{package.ref}: stage {st.name!r} package {stage_package.sha256} is not the "
                                 f"pinned {st.sha256}", model=package.ref)
            if stage_package.record.package_format == FORMAT:
                raise ModelRunError(f"{package.ref}: stage {st.name!r} is itself a pipeline; stages are models",
                                    model=package.ref)
            self.stage_runners[st.name] = Runner(stage_package, self.options)
        self._check_wiring()
        # each stage's fixed parameters, checked now: before any model code runs
        self.stage_params = {st.name: self.stage_runners[st.name].check_params(st.params) for st in spec.stages}

    def _check_wiring(self) -> None:
        ref = self.package.ref
        for src, out, dst, inp in self.spec.wiring:
            outs = [str(o["name"]) for o in self.stage_runners[src].record.outputs]
            ins = [str(a["name"]) for a in self.stage_runners[dst].record.array_inputs]
            if out not in outs:
                raise ModelRunError(f"{ref}: wiring {src}.{out} -> {dst}.{inp}: stage {src!r} has no output {out!r} "
                                    f"(it has {', '.join(outs)})", model=ref)
            if inp not in ins:
                raise ModelRunError(f"{ref}: wiring {src}.{out} -> {dst}.{inp}: stage {dst!r} has no array input "
                                    f"{inp!r} (it has {', '.join(ins) or 'none'})", model=ref)
        for st in self.spec.stages:
            for a in self.stage_runners[st.name].record.array_inputs:
                if not any(w[2] == st.name and w[3] == a["name"] for w in self.spec.wiring):
                    raise ModelRunError(f"{ref}: stage {st.name!r} input {a['name']!r} is not wired", model=ref)
        for name, (sname, so) in self.spec.outputs.items():
            outs = [str(o["name"]) for o in self.stage_runners[sname].record.outputs]
            if so not in outs:
                raise ModelRunError(f"{ref}: output {name!r} maps to {sname}.{so}, which stage {sname!r} does not make",
                                    model=ref)

    @property
    def info(self) -> dict[str, Any]:
        info = super().info
        info["stages"] = {st.name: {"ref": st.ref, "sha256": st.sha256, "seed": "stage_seed(seed, name)",
                                    **{k: v for k, v in self.stage_runners[st.name].info.items()
                                       if k in ("mode", "device")}} for st in self.spec.stages}
        return info

    def prepare(self) -> None:
        for r in self.stage_runners.values():
            r.prepare()

    def _run_batch(self, seeds: list[int], params: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        made: dict[str, dict[str, np.ndarray]] = {}
        for st in self.spec.stages:
            runner = self.stage_runners[st.name]
            sseeds = [stage_seed(s, st.name) for s in seeds]
            wired = {inp: made[src][out] for src, out, dst, inp in self.spec.wiring if dst == st.name}
            if wired:
                try:
                    checked = check_inputs(runner.record, wired)
                except InputError as exc:
                    raise ModelRunError(f"{self.package.ref}: what stage {st.name!r} was given does not fit its "
                                        f"inputs: {exc.message}", model=self.package.ref) from None
                made[st.name] = runner.sample_inputs(sseeds, self.stage_params[st.name], dict(checked.arrays))
            else:
                made[st.name] = runner.sample(sseeds, self.stage_params[st.name])
        return {name: made[sname][so] for name, (sname, so) in self.spec.outputs.items()}

    def peak_memory_mb(self) -> float | None:
        peaks = [p for p in (r.peak_memory_mb() for r in self.stage_runners.values()) if p is not None]
        return max(peaks) if peaks else None

    @property
    def loaded(self) -> bool:
        return any(r.loaded for r in self.stage_runners.values())

    def close(self) -> None:
        for r in self.stage_runners.values():
            r.close()


def open_runner(package: VerifiedPackage, options: RunnerOptions | None = None,
                stages: Mapping[str, VerifiedPackage] | None = None, **overrides: Any) -> Runner:
    """The runner of any package: a :class:`PipelineRunner` for a pipeline (its stages
    prepared with :func:`prepare_stages`), else a plain :class:`Runner`."""
    if package.record.package_format == FORMAT:
        if stages is None:
            raise Unverified(f"{package.ref} is a pipeline; its stages were not prepared",
                             hint="open it through a site (Site.model), which prepares every stage",
                             model=package.ref)
        return PipelineRunner(package, stages, options, **overrides)
    return Runner(package, options, **overrides)
