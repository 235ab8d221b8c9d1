"""Git mirrors of upstream indexes: ``<site>/upstreams/<name>/`` (bare repositories).

Two refs matter in each mirror:

- ``refs/synthmed/fetched``: whatever the upstream's branch pointed at on the last fetch
  (force-updated; nothing trusts it)
- ``refs/synthmed/accepted``: the last accepted commit (it keeps that commit's objects
  alive even when the upstream rewrites its history)

Git runs two ways. What a sync with nothing new needs (resolving a ref, checking that a
commit is there, fetching) runs the ``git`` binary directly (:meth:`UpstreamRepo._run`, with
the environment gitpython gives it), so a no-op ``synthmed sync`` and ``synthmed status``
never import gitpython (about 40 ms); everything else goes through gitpython's command
wrapper, imported by the methods that use it. The site lock guarantees one writer, so lock
files left behind by a killed git process are stale and are removed.

What reaches git from outside is checked first (:mod:`synthmed.registry.upstream_check`)
and is always placed after ``--`` or ``--end-of-options``, so no URL, ref or path is ever
read as an option; fetches allow only the transports that check allows. A mirror folder
is removed only when synthmed made it (it holds the marker file :data:`MARKER`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from synthmed.registry.accepted import raw_diff_entries
from synthmed.registry.errors import ConfigError, SyncRefused
from synthmed.registry.redact import redact_text
from synthmed.registry.upstream_check import URL_SCHEMES, check_name, check_url, redact_url

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

#: a file synthmed puts in every mirror folder it makes; only such folders are ever removed
MARKER = "synthmed-mirror"
#: git -c options for every fetch: only the transports upstream_check allows
_PROTOCOLS = ["-c", "protocol.allow=never",
              *(a for p in URL_SCHEMES for a in ("-c", f"protocol.{p}.allow=always"))]
_CREDENTIALS = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")

FETCHED_REF = "refs/synthmed/fetched"
ACCEPTED_REF = "refs/synthmed/accepted"

#: ``git log %G?`` codes, in words
SIGNATURE_CODES = {
    "G": "good signature by an allowed signer",
    "U": "signed by a key that is not in the allowed signers",
    "N": "not signed",
    "B": "bad signature",
    "X": "good signature that has expired",
    "Y": "good signature by an expired key",
    "R": "good signature by a revoked key",
    "E": "signature cannot be checked",
}


def resolve_url(url: str, site_home: Path) -> str:
    """A local path (relative ones are relative to the site folder) becomes absolute."""
    if "://" in url or url.startswith("git@") or (":" in url.split("/")[0] and not Path(url).exists()):
        return url
    p = Path(url).expanduser()
    if not p.is_absolute():
        p = (site_home / p).resolve()
    return str(p)


#: a ref git could not lock: another git (e.g. of a sync killed with -9) is updating it
_REF_LOCKED = re.compile(r"cannot lock ref|Unable to create '[^']*\.lock': File exists")
#: how long a fetch waits, in all, for another git to release the ref, and its first wait
LOCK_RETRY_TOTAL_S = 30.0
LOCK_RETRY_FIRST_S = 0.2


def git_command(args: list[str]) -> str:
    """The git sub-command in ``args`` (``fetch`` in ``-c k=v fetch ...``)."""
    for i, a in enumerate(args):
        if not a.startswith("-") and (i == 0 or args[i - 1] != "-c"):
            return a
    return "?"


class GitFailed(Exception):
    """A git command run by :meth:`UpstreamRepo._run` exited with an error (or timed out)."""

    def __init__(self, args: list[str], status: int, stderr: str) -> None:
        super().__init__(f"git {git_command(args)} exited {status}: {stderr.strip()}")
        self.status = status
        self.stderr = stderr


@dataclass(frozen=True)
class Change:
    """One changed file between two commits: ``status`` A, M or D; ``blob`` the new blob sha."""

    status: str
    path: str
    blob: str | None


class UpstreamRepo:
    """One upstream's bare mirror repository."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._repo: git.Repo | None = None
        self._known: set[str] = set()

    # -- setup -------------------------------------------------------------------------

    @property
    def repo(self) -> git.Repo:
        import git

        if self._repo is None:
            self._repo = git.Repo(self.path)
        return self._repo

    @property
    def g(self) -> git.Git:
        return self.repo.git

    @classmethod
    def for_upstream(cls, upstreams_dir: Path, name: str) -> "UpstreamRepo":
        """The mirror of upstream ``name``: a checked name, so a folder directly in ``upstreams_dir``."""
        return cls(Path(upstreams_dir) / check_name(name, f"upstream {name!r}"))

    def exists(self) -> bool:
        return (self.path / "HEAD").is_file() and (self.path / "objects").is_dir()

    @staticmethod
    def made_by_synthmed(path: Path) -> bool:
        """A real folder (not a link) holding :data:`MARKER`: one that synthmed may remove."""
        return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()

    def _remove_own(self, path: Path, what: str) -> None:
        if not self.made_by_synthmed(path):
            raise SyncRefused(f"{path} is {what}, and synthmed did not make it, so it was left as it is",
                              hint=f"move {path} away (or remove it yourself), then sync or import again",
                              kind="mirror")
        shutil.rmtree(path)

    def ensure(self) -> "UpstreamRepo":
        """Create the bare mirror if needed; repair what a killed git may have left.

        Only folders holding :data:`MARKER` are removed; anything else in the way is an error.
        """
        if (self.path.exists() or self.path.is_symlink()) and not (self.exists() and not self.path.is_symlink()):
            log.warning("%s: not a usable git mirror (an interrupted first sync?); recreating it", self.path)
            self._remove_own(self.path, "not a usable git mirror")
        if not self.path.exists():
            import git

            tmp = self.path.with_name(self.path.name + ".init-tmp")
            if tmp.exists() or tmp.is_symlink():
                self._remove_own(tmp, "in the way of a new mirror")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            (tmp / MARKER).write_text("a bare git mirror made by synthmed; synthmed may remove this folder\n")
            git.Repo.init(tmp, bare=True)
            tmp.rename(self.path)
        self.clear_stale_locks()
        return self

    def clear_stale_locks(self) -> None:
        """Remove ``*.lock`` files; only safe because the site lock excludes other writers."""
        for lock in list(self.path.glob("*.lock")) + list((self.path / "refs").rglob("*.lock")):
            log.warning("%s: removing a stale git lock file %s", self.path.name, lock.name)
            lock.unlink(missing_ok=True)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # -- refs ----------------------------------------------------------------------------

    def _run(self, args: list[str], timeout: float | None = None) -> str:
        """stdout of ``git ARGS`` run in the mirror, the ``git`` binary run directly (no
        gitpython: see the module's docstring) as gitpython runs it: in the mirror's folder (so
        git finds the repository, and checks its owner, the same way) with the C locale (git's
        English messages); :class:`GitFailed` when it exits with an error or runs past
        ``timeout`` seconds (then it is killed, with its helpers)."""
        env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C"}
        try:  # a process group of its own, so a timeout (or an interrupt) stops git's helpers too, as gitpython does
            proc = subprocess.Popen(["git", *args], cwd=self.path, stdin=subprocess.DEVNULL,  # in the mirror, as gitpython
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            raise GitFailed(args, -1, f"git could not be run: {exc}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as exc:  # the timeout, or KeyboardInterrupt: git and its helpers go with it
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise GitFailed(args, -9, f"git {git_command(args)} killed after {timeout:g} s") from None
            raise
        if proc.returncode:
            raise GitFailed(args, proc.returncode, err.decode("utf-8", "replace"))
        return out.decode("utf-8", "replace")

    def rev(self, ref: str) -> str | None:
        try:
            return self._run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]).strip() or None
        except GitFailed:
            return None

    def has_commit(self, sha: str) -> bool:
        if sha in self._known:
            return True
        try:
            self._run(["cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}"])
        except GitFailed:
            return False
        self._known.add(sha)  # objects are never removed while a sync runs
        return True

    def set_ref(self, ref: str, sha: str) -> None:
        self.g.update_ref("--end-of-options", ref, sha)

    def fetch(self, url: str, branch: str, timeout: float | None = 600) -> str:
        """Fetch the upstream branch into ``refs/synthmed/fetched``; return its commit."""
        try:  # again here: Upstream objects can be made without settings
            check_url(url, "upstream URL")
        except ConfigError as exc:
            raise SyncRefused(exc.message, hint=exc.hint, kind="fetch") from None
        shown = redact_url(url)
        delay = LOCK_RETRY_FIRST_S
        waited = 0.0
        while True:
            try:
                self._run([*_PROTOCOLS, "fetch", "--no-tags", "--force", "--quiet", "--", url,
                           f"+refs/heads/{branch}:{FETCHED_REF}"], timeout=timeout)
                break
            except GitFailed as exc:
                err = redact_text((exc.stderr or str(exc)).strip().replace("\n", " ").replace(url, shown))
                err = _CREDENTIALS.sub(r"\1:***@", err)
                if _REF_LOCKED.search(err) and waited < LOCK_RETRY_TOTAL_S:
                    # a git of a sync that was killed (kill -9 leaves its git child running) is
                    # still updating the ref; it finishes on its own: wait for it, then fetch again
                    log.info("%s: the mirror's ref is being updated by another git (%s); retrying in %.1fs",
                             shown, err, delay)
                    time.sleep(delay)
                    waited += delay
                    delay = min(delay * 2, 2.0)
                    continue
                hint = "check the upstream's url and branch in site.toml, and the network"
                if _REF_LOCKED.search(err):
                    hint = (f"a git process kept {FETCHED_REF} locked for {waited:.0f}s; when no git runs in "
                            f"{self.path}, remove the stale .lock file named above and sync again")
                raise SyncRefused(f"cannot fetch branch {branch!r} from {shown}: {err}", hint=hint,
                                  kind="fetch") from None
        sha = self.rev(FETCHED_REF)
        if sha is None:  # pragma: no cover - fetch succeeded, so the ref exists
            raise SyncRefused(f"fetched nothing from {shown} branch {branch!r}")
        return sha

    def bundle_heads(self, bundle: Path) -> list[tuple[str, str]]:
        """``git bundle verify`` then its refs as ``[(sha, ref)]``; SyncRefused if it is no git bundle."""
        import git

        path = str(Path(bundle).absolute())
        try:
            self.g.bundle("verify", "--quiet", "--", path)
            out = str(self.g.bundle("list-heads", "--", path))
        except git.GitCommandError as exc:
            err = (exc.stderr or str(exc)).strip().replace("\n", " ")
            raise SyncRefused(f"{bundle}: not a usable git bundle ({err})",
                              hint="export it again with `synthmed export DIR`", kind="bundle") from None
        heads = []
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            heads.append((sha, ref))
        return heads

    def fetch_bundle(self, bundle: Path) -> str:
        """Take a git bundle's (single) ref into ``refs/synthmed/fetched``; return its commit."""
        import git

        heads = self.bundle_heads(bundle)
        if len(heads) != 1 or not heads[0][1].startswith("refs/"):
            raise SyncRefused(f"{bundle}: the bundle must hold exactly one ref, it holds {len(heads)}",
                              hint="export it again with `synthmed export DIR`", kind="bundle")
        try:
            self.g.fetch("--no-tags", "--force", "--quiet", "--", str(Path(bundle).absolute()),
                         f"+{heads[0][1]}:{FETCHED_REF}")
        except git.GitCommandError as exc:
            err = (exc.stderr or str(exc)).strip().replace("\n", " ")
            raise SyncRefused(f"{bundle}: cannot fetch from the bundle ({err})", kind="bundle") from None
        sha = self.rev(FETCHED_REF)
        assert sha is not None
        return sha

    def is_ancestor(self, old: str, new: str) -> bool:
        import git

        try:
            self.g.merge_base("--is-ancestor", "--end-of-options", old, new)
            return True
        except git.GitCommandError as exc:
            if exc.status == 1:
                return False
            raise

    def commit_time(self, sha: str) -> str:
        ts = int(self.repo.commit(sha).committed_date)  # through the persistent cat-file process
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")

    # -- signatures ------------------------------------------------------------------------

    def unsigned_commits(self, old: str | None, new: str, signers_file: Path) -> list[tuple[str, str]]:
        """Commits of ``old..new`` (first parent; only ``new`` on a first sync) whose
        signature is not good by an allowed signer: ``[(sha, reason), ...]``.

        Following the first parent checks the commits the upstream's maintainers made on
        the branch (merge commits included); a signature covers the whole tree, so a signed
        merge vouches for what it brings in.
        """
        rng = ["-1", "--end-of-options", new] if old is None else ["--first-parent", "--end-of-options", f"{old}..{new}"]
        out = str(self.g.execute(
            ["git", "-c", f"gpg.ssh.allowedSignersFile={signers_file}", "log", "--format=%H %G? %GS", *rng]))
        bad = []
        for line in out.splitlines():
            parts = line.split(" ", 2)
            if len(parts) < 2:
                continue
            sha, code = parts[0], parts[1]
            if code != "G":
                bad.append((sha, SIGNATURE_CODES.get(code, f"signature status {code}")))
        return bad

    # -- trees -----------------------------------------------------------------------------

    def changes(self, old: str, new: str, prefix: str) -> list[Change]:
        """Files that differ between two commits under ``prefix`` (no rename detection)."""
        out = str(self.g.diff_tree("-r", "-z", "--no-renames", "--no-commit-id", "--end-of-options", old, new, "--",
                                  prefix or "."))
        changes = []
        for fields, path in raw_diff_entries(out):
            st = fields[4][0]
            changes.append(Change(st if st in "AMD" else "M", path, None if st == "D" else fields[3]))
        return changes

    def files(self, commit: str, prefix: str) -> list[Change]:
        """Every file under ``prefix`` at ``commit``, as additions."""
        out = str(self.g.ls_tree("-r", "-z", "--end-of-options", commit, "--", prefix or "."))
        result = []
        for item in out.split("\0"):
            if not item:
                continue
            meta, path = item.split("\t", 1)
            _, kind, blob = meta.split(" ")
            if kind == "blob":
                result.append(Change("A", path, blob))
        return result

    def blobs_at(self, commit: str, paths: Sequence[str]) -> dict[str, str]:
        """``{path: blob}`` of those of ``paths`` that are files at ``commit`` (absent ones are left out)."""
        found: dict[str, str] = {}
        for i in range(0, len(paths), 500):  # bounded argument lists
            out = str(self.g.ls_tree("-z", "--full-tree", "--end-of-options", commit, "--",
                                   *(f":(literal){p}" for p in paths[i:i + 500])))
            for item in out.split("\0"):
                if item:
                    meta, path = item.split("\t", 1)
                    _, kind, blob = meta.split(" ")
                    if kind == "blob":
                        found[path] = blob
        return found

    def blob_size(self, sha: str) -> int:
        """A blob's size in bytes, without reading it (the persistent ``cat-file --batch-check``)."""
        _, _, size = self.g.get_object_header(sha)
        return int(size)

    def read_blobs(self, blobs: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Blob contents through one persistent ``git cat-file --batch``."""
        for sha in blobs:
            _, _, _, data = self.g.get_object_data(sha)
            yield sha, data

    def bundle(self, dest: Path) -> None:
        """Write a git bundle of the accepted commit (ref ``refs/synthmed/accepted``)."""
        self.g.bundle("create", "--quiet", "--", str(Path(dest).absolute()), ACCEPTED_REF)
