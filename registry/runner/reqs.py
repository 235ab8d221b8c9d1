"""Requirement checks with importlib.metadata and packaging: is a record's
``package.requirements`` list satisfied by an environment?

Runnable as ``python -m synthmed.registry.runner.reqs REQ...`` inside another
environment: prints a JSON list of what is unsatisfied there, including the missing
dependencies of distributions installed in that environment's own site-packages.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def _applies(req: Requirement, extras: Iterable[str] = ("",)) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in extras)


def is_satisfied(text: str) -> bool:
    """True when the running environment satisfies one PEP 508 requirement."""
    req = Requirement(text)
    if not _applies(req):
        return True
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(version, prereleases=True)


def unsatisfied(requirements: Iterable[str]) -> list[str]:
    """The requirements the running environment does not satisfy (invalid ones included)."""
    out = []
    for text in requirements:
        try:
            ok = is_satisfied(text)
        except InvalidRequirement:
            ok = False
        if not ok:
            out.append(text)
    return out


def _local_dists() -> list[metadata.Distribution]:
    """Distributions installed in this environment's own site-packages."""
    own = {Path(sysconfig.get_paths()["purelib"]).resolve(), Path(sysconfig.get_paths()["platlib"]).resolve()}
    found = []
    for dist in metadata.distributions():
        loc = getattr(dist, "_path", None)
        if loc is not None and Path(loc).resolve().parent in own:
            found.append(dist)
    return found


def missing_in_env(requirements: Iterable[str]) -> list[str]:
    """Unsatisfied top-level requirements plus unsatisfied dependencies of the
    distributions installed in this environment's own site-packages."""
    todo = list(unsatisfied(requirements))
    seen = {canonicalize_name(Requirement(t).name) for t in todo if _valid(t)}
    for dist in _local_dists():
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if not _applies(req):
                continue
            name = canonicalize_name(req.name)
            if name in seen:
                continue
            plain = _without_marker(req)
            if not is_satisfied(plain):
                todo.append(plain)
                seen.add(name)
    return todo


def _without_marker(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def _valid(text: str) -> bool:
    try:
        Requirement(text)
        return True
    except InvalidRequirement:
        return False


if __name__ == "__main__":  # run inside a model environment by envs.build_env
    json.dump(missing_in_env(sys.argv[1:]), sys.stdout)
    sys.stdout.write("\n")
