"""A throwaway review site for a pull request: ``synthmed index review --base REV``.

The pull-request gate (:func:`synthmed.registry.authoring.indexcheck.check_index`) judges what a
pull request adds and changes; this goes one step further, so a reviewer need not build a
review site by hand: it copies the index repository (a bare clone, so the reviewed
repository is never touched), points a new site at the pull request's head there, syncs
it (the same sync every site runs: schema, immutability, artefacts fetched and verified
through :func:`~synthmed.registry.packages.prepare`) and model-tests every added or
changed version in a worker, writing one report.

The outcome: ``gate_ok`` (the index check passed), the refs tested, and how many
passed, failed, could not be tested (``error``) or were skipped by policy (an unverified
record is skipped: it is searchable, never run). A review fails when the gate fails, the
review site's sync refuses a record, a model test fails, or a version could not be tested
(its package could not be fetched, its environment built, ...): the gate fails on what it
could not check.

Run it with the *base branch's* synthmed (CI installs the base checkout and points
``--repo`` at the pull request's checkout), so a pull request that changes the checker is
not judged by its own checker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import git

from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError
from synthmed.registry.authoring.indexcheck import IndexCheckResult, check_index, find_index_prefix
from synthmed.registry.checks.modeltest_site import TestRun, run_tests
from synthmed.registry.settings import load_settings
from synthmed.registry.authoring.site_config import UpstreamSpec, init_site

from .sync import sync_all

log = logging.getLogger(__name__)

#: the upstream name of the pull request's index in the review site
UPSTREAM = "review"
#: the branch the review site follows in its private copy of the index repository
BRANCH = "synthmed-review"


@dataclass
class ReviewResult:
    check: IndexCheckResult
    site: Path
    tested: list[str] = field(default_factory=list)
    run: TestRun | None = None
    sync_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if not self.check.ok or self.sync_problems:
            return False
        return self.run is None or self.run.ok

    def as_dict(self) -> dict[str, Any]:
        results = self.run.results if self.run else []
        return {
            "ok": self.ok,
            "gate": self.check.as_dict(),
            "site": str(self.site),
            "tested": self.tested,
            "sync_problems": self.sync_problems,
            "report": str(self.run.report_path) if self.run and self.run.report_path else None,
            "results": [{"ref": r.ref, "status": r.status, "reason": r.reason} for r in results],
        }


def refs_to_test(check: IndexCheckResult) -> list[str]:
    """``id@version`` of every version the pull request adds or changes, in order, once."""
    out: list[str] = []
    for ref in list(check.added_models) + list(check.added_versions) + [str(c["ref"]) for c in check.changed]:
        if ref not in out:
            out.append(ref)
    return out


def review(repo: Path, base: str, head: str, out: Path, *, index_dir: str | None = None,
           timeout_s: float | None = None, progress: Callable[[str], None] = lambda m: None) -> ReviewResult:
    """Gate the pull request, then sync a fresh review site at ``out/site`` from its head
    and test what it adds or changes (report in ``out/report``). ``out`` must not exist or
    be empty: a review never mixes with an earlier one."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty", hint="give --out a new folder (each review starts from nothing)")
    check = check_index(Path(repo), base, head, index_dir)
    site = out / "site"
    result = ReviewResult(check=check, site=site)
    progress(check.summary())
    if not check.ok:
        return result  # the gate failed: nothing of the pull request is run
    source = git.Repo(Path(repo), search_parent_directories=True)
    head_sha = source.commit(head).hexsha
    mirror = out / "index.git"
    out.mkdir(parents=True, exist_ok=True)
    git.Repo.clone_from(str(Path(source.git_dir).resolve()), str(mirror), bare=True, no_local=True)
    git.Repo(mirror).git.branch("-f", "--", BRANCH, head_sha)
    sub = find_index_prefix(source, source.commit(head_sha), index_dir)  # as the gate found it
    init_site(site, [UpstreamSpec(UPSTREAM, str(mirror), BRANCH, sub)], name="synthmed-review")
    settings = load_settings(site, {}, environ={})
    with Catalog.open(settings.catalog_path, readonly=False) as catalog:
        for r in sync_all(settings, catalog, progress=progress):
            if r.status != "ok":
                result.sync_problems.append(f"{r.upstream}: {r.status}: {r.reason}")
            result.sync_problems.extend(f"{path}: {why.splitlines()[-1].strip()}" for path, why in r.skipped)
        if result.sync_problems:
            return result  # the site refused part of the pull request: that is the finding
        result.tested = refs_to_test(check)
        entries = [catalog.models.resolve(f"{UPSTREAM}/{ref}") for ref in result.tested]
        result.run = run_tests(settings, entries, report_dir=out / "report", catalog=catalog, timeout_s=timeout_s,
                               progress=progress)
    return result
