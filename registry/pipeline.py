"""Running pipelines (package format ``synthmed-pipeline-1``, :mod:`.formats.pipeline1`):
the stages' runners one after another per batch, the outputs of earlier stages wired to
the array inputs of later ones; what crosses is checked against the target's
``array_inputs`` like any input (:mod:`.array_inputs`).

- A pipeline's stages are prepared with it by :func:`~synthmed.registry.packages.prepare`
  (``VerifiedPackage.stages``); :func:`open_runner` opens the runner of any package.
- **Seeds.** The sample of seed ``s`` runs stage ``name`` with seed
  :func:`stage_seed` ``(s, name)``: the first 4 bytes (big-endian) of
  ``sha256("synthmed-pipeline-1:<s>:<name>")``, an integer in 0 .. 2**32-1. Stages get
  unrelated seeds, and a sample depends only on its own seed.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Mapping

import numpy as np

from .array_inputs import check_inputs
from .errors import InputError, ModelRunError, Unverified
from .formats.pipeline1 import FORMAT, PipelineSpec, Stage, load_spec
from .packages import VerifiedPackage
from .runner import Runner, RunnerOptions

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "PipelineRunner", "PipelineSpec", "Stage", "load_spec", "open_runner", "stage_seed"]

def stage_seed(seed: int, stage: str) -> int:
    """The seed stage ``stage`` runs with for the pipeline sample of seed ``seed``."""
    digest = hashlib.sha256(f"{FORMAT}:{int(seed)}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class PipelineRunner(Runner):
    """Runs a pipeline: the stages' runners one after another per batch of seeds. Built
    from the pipeline's verified package and each stage's (``VerifiedPackage.stages``)."""

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
            if stage_package.format.staged:
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
    """The runner of any package: a :class:`PipelineRunner` for a format that runs as
    stages (its stages: ``stages``, else those :func:`~synthmed.registry.packages.prepare`
    prepared with it), else a plain :class:`Runner`."""
    if package.format.staged:
        stages = stages or package.stages
        if not stages:
            raise Unverified(f"{package.ref} is a pipeline; its stages were not prepared",
                             hint="open it through a site (Site.model), which prepares every stage",
                             model=package.ref)
        return PipelineRunner(package, stages, options, **overrides)
    return Runner(package, options, **overrides)
