"""The set-up is reproducible: scripts/setup.sh (and so .ci/run) installs from the committed
constraints.txt, which pins every dependency of pyproject.toml, the test extras included, to
one version inside its range; pyproject.toml keeps ranges for `pip install synthmed`
(issue #26)."""

from __future__ import annotations

import re
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((REPO_ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt:{n}: not an exact pin: {line!r}"
        pins[canonicalize_name(m[1])] = Version(m[2])
    return pins


#: pinned exactly in pyproject.toml on purpose: the frd-radiomics extractor record names these
#: versions and refuses others (docs/evaluation.md), so a range would only admit refusals
EXACT_BY_DESIGN = {"frd-score", "pyradiomics-bhklab"}


def test_constraints_pin_every_dependency_inside_its_range() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pins = _pins()
    env = default_environment()
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt pins no version of {req.name}: run bash scripts/refresh-constraints.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: "
            "run bash scripts/refresh-constraints.sh")
        if name not in EXACT_BY_DESIGN:
            assert req.specifier and not str(req.specifier).startswith("=="), f"{req}: pyproject.toml keeps a range"
    assert str(pins["torch"]) == "2.13.0"  # the CPU build setup.sh installs first satisfies it


def test_setup_and_ci_install_from_the_constraints() -> None:
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r'pip install -q -e "\.\[test\]" -c constraints\.txt', setup)
    assert "scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()
    assert "scripts/setup.sh" in (REPO_ROOT / "scripts" / "test.sh").read_text()
    refresh = (REPO_ROOT / "scripts" / "refresh-constraints.sh").read_text()
    assert 'pip install -q ".[test]"' in refresh and "constraints.txt" in refresh
