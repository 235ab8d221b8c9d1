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

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .contribute_package import (PackageTest, build_record, check_package_contents, check_record, load_metadata,
                                 preflight_record, reproducible_zip, test_archive, test_package_dir, zip_with_record)
from .contribute_stores import (INDEX_MAX_BYTES, STORES, IndexLocation, check_store, locate_index, store_in_index,
                                upload_dvc, upload_zenodo, zenodo_token)
from ..errors import ContributeError
from .indexcheck import check_index
from ..record_paths import MODELS_DIR, holds_shards, record_relpaths
from ..checks.report import write_report
from ..settings import Settings

log = logging.getLogger(__name__)

#: what the contribution workflow offers its callers (the SDK, the CLI), wherever it lives
__all__ = ["ContributeResult", "PackageTest", "STORES", "INDEX_MAX_BYTES", "build_record", "contribute", "instructions",
           "reproducible_zip", "test_archive", "test_package_dir", "upload_zenodo", "zenodo_token"]


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




def default_base(repo: Any) -> str:
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
    base = base or default_base(repo)
    target = _Target.check(repo, loc, base, model_id, version)
    work = Path(tempfile.mkdtemp(prefix="synthmed-contribute-"))
    try:
        zip_path, sha, size, provisional = zip_with_record(package_dir, work, meta, model_id, version,
                                                           package_format=package_format,
                                                           entry_point=entry_point, progress=progress)
        check_package_contents(package_dir, provisional)
        progress("testing the model")
        status, report = _test_package(provisional, zip_path, work, timeout_s, report_dir, device)
        progress(f"model test {status}")

        def upload(worktree: Path) -> tuple[str, list[str]]:
            """The artefact's source, and what the index commit adds besides the record."""
            if store == "zenodo":
                assert token is not None
                host = zenodo_host or (settings.sources.zenodo_host if settings else "https://zenodo.org")
                progress(f"uploading to Zenodo at {host}")
                return upload_zenodo(zip_path, provisional, host=host, token=token), []
            if store == "dvc":
                assert dvc_repo is not None
                progress(f"adding to DVC in {dvc_repo} and pushing")
                return upload_dvc(zip_path, model_id, version, dvc_repo=Path(dvc_repo), remote=dvc_remote,
                                  path=dvc_path, url=dvc_url), []
            source, added = store_in_index(zip_path, model_id, version, worktree, loc, index_max_bytes)
            return source, [added]

        def make_record(source: str) -> dict[str, Any]:
            progress(f"artefact source: {source}")
            record = build_record(meta, model_id, version, sha256=sha, size=size, sources=[source],
                                  package_format=package_format, entry_point=entry_point)
            check_record(record, target.relpath)
            return record

        commit, source, record = target.commit(work / "worktree", upload, make_record,
                                               f"Add {model_id} {version} (synthmed contribute, store: {store})\n\n"
                                               f"artefact sha256 {sha}, {size} bytes\n")
        check = check_index(loc.repo_root, target.base_commit, commit, loc.subfolder or None)
        if not check.ok:
            raise ContributeError(f"the branch {target.branch} does not pass the index check:\n{check.summary()}",
                                  hint=f"fix the record, delete the branch (`git branch -D {target.branch}`) and retry")
        kept = Path(tempfile.gettempdir()) / f"synthmed-{model_id}-{version}-{sha[:12]}.zip"
        shutil.copyfile(zip_path, kept)
        result = ContributeResult(
            ref=f"{model_id}@{version}", branch=target.branch, commit=commit, index_repo=loc.repo_root,
            record_path=target.relpath, record=record, sha256=sha, size=size, source=source, artefact=kept,
            test_status=status, test_report=report, check_warnings=[str(w) for w in check.warnings])
        if store == "dvc" and dvc_repo is not None:
            result.extra_steps.append(f"git -C {Path(dvc_repo).resolve()} push   # the commit holding the .dvc file "
                                      "(the artefact itself is already on the DVC remote)")
        result.instructions = instructions(repo, result, base)
        return result
    except BaseException:
        if target.branch in [h.name for h in repo.heads]:
            repo.git.branch("-D", target.branch)
            log.info("removed the branch %s after the failed contribution", target.branch)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class _Target:
    """Where the record goes: the branch ``contribute/<id>-<version>`` from ``base`` of the
    index repository, and the record's path there."""

    repo: Any  # git.Repo of the index
    base_commit: str
    relpath: str
    branch: str

    @classmethod
    def check(cls, repo: Any, loc: IndexLocation, base: str, model_id: str, version: str) -> "_Target":
        """The target, or ContributeError when the base is unknown, the version is already
        in it or the branch exists (checked before anything is zipped)."""
        flat, sharded = (loc.rel(r) for r in record_relpaths(model_id, version))
        try:  # the record goes where the base keeps its records (registry/record_paths.py)
            in_shards = holds_shards(t.name for t in repo.commit(base).tree[loc.rel(MODELS_DIR)].trees)
        except Exception:  # noqa: BLE001 - an unknown base or no models/ yet: `at` says what is wrong
            in_shards = False
        return cls.at(repo, loc, base, sharded if in_shards else flat, f"contribute/{model_id}-{version}",
                      f"{model_id}@{version}", twin=flat if in_shards else sharded)

    @classmethod
    def at(cls, repo: Any, loc: IndexLocation, base: str, relpath: str, branch: str, ref: str,
           again: str = "contribute", twin: str | None = None) -> "_Target":
        """The target ``relpath`` on the new ``branch`` (any record: a model's, a dataset's;
        ``twin``: where the same version would be in the other record layout)."""
        import git

        try:
            base_commit = repo.commit(base)
        except (git.BadName, ValueError):
            raise ContributeError(f"{loc.repo_root}: no branch or commit {base!r}", hint="pass --base with the index's main branch") from None
        for held in filter(None, (relpath, twin)):
            try:
                base_commit.tree[held]
                raise ContributeError(f"{ref} already exists in the index at {held} ({base})",
                                      hint=f"a merged version never changes: {again} a new version")
            except KeyError:
                pass
        if branch in [h.name for h in repo.heads]:
            raise ContributeError(f"{loc.repo_root}: branch {branch} already exists",
                                  hint=f"delete it (`git branch -D {branch}`) to {again} again")
        return cls(repo, base_commit.hexsha, relpath, branch)

    def commit(self, worktree: Path, upload: Callable[[Path], tuple[str, list[str]]],
               make_record: Callable[[str], dict[str, Any]], message: str) -> tuple[str, str, dict[str, Any]]:
        """In a temporary worktree on the new branch: upload the artefact, write the record
        made for its source, commit both; returns (commit, source, record). The
        contributor's own checkout is left as it was."""
        import git

        self.repo.git.worktree("add", "--quiet", "-b", self.branch, str(worktree), self.base_commit)
        try:
            source, to_add = upload(worktree)
            record = make_record(source)
            dest = worktree / self.relpath
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
            wt = git.Repo(worktree)
            wt.index.add(to_add + [self.relpath])
            commit = wt.index.commit(message + f"source {source}\n")
        finally:
            self.repo.git.worktree("remove", "--force", str(worktree))
        return commit.hexsha, source, record


def _test_package(record: dict[str, Any], zip_path: Path, work: Path, timeout_s: float | None,
                  report_dir: Path | None, device: str) -> tuple[str, Path | None]:
    """The model test of the zip (its report written when asked); ContributeError unless it passed."""
    result = test_archive(record, zip_path, work, timeout_s=timeout_s, device=device)
    report = write_report(report_dir, [result]) if report_dir else None
    if result.status != "passed":
        raise ContributeError(
            f"{result.ref}: the model test {result.status}: {result.reason}",
            hint="fix the package or the record's outputs/test fields, then contribute again"
                 + (f"; the report is in {report.parent}" if report else ""), test_status=result.status)
    return result.status, report


def _pr_url(remote_url: str, base: str, branch: str) -> str | None:
    m = re.match(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+)/(.+?)(?:\.git)?/?$",
                 remote_url)
    if not m:
        return None
    return f"https://github.com/{m.group(1)}/{m.group(2)}/compare/{base}...{branch}?expand=1"


def instructions(repo: Any, result: ContributeResult | Any, base: str) -> str:
    """The next steps (push, pull request) of a record committed on a branch: ``result`` has
    ``ref``, ``branch``, ``commit``, ``index_repo``, ``record_path``, ``source``, ``sha256``,
    ``size`` and ``extra_steps`` (a contribution's, or a published dataset's)."""
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
