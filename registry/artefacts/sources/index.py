"""``index:<path>`` sources: a file inside the index repository.

Read at a commit straight from git's object database (gitpython, no checkout), or, for
``synthmed index pin``, from an index working-tree folder (the artefact may not be
committed yet). Paths are relative to the index folder and never leave it.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from .base import FileStream, Source, source_error
from .file import open_local

log = logging.getLogger(__name__)


def index_relpath(uri: str) -> PurePosixPath:
    rel = PurePosixPath(uri[len("index:"):])
    if not str(rel) or rel.is_absolute() or ".." in rel.parts or str(rel) == ".":
        raise source_error(uri, "an index: path must be relative and stay inside the index folder",
                           hint="write index:artefacts/<id>/<file>")
    return rel


class _GitBlobReader:
    """Adapts a gitdb stream (``read(n)``) to ``readinto``."""

    def __init__(self, stream: Any, repo: Any) -> None:
        self._s = stream
        self._repo = repo

    def readinto(self, buf: memoryview) -> int:
        data = self._s.read(len(buf))
        n = len(data)
        buf[:n] = data
        return n

    def close(self) -> None:
        close = getattr(self._s, "close", None)
        if close is not None:
            close()
        self._repo.close()


class IndexSource(Source):
    remote = False

    def _parse(self, uri: str) -> None:
        self.rel = index_relpath(uri)
        # the working tree supports seeking; git object streams are read from the start
        self.supports_range = self.ctx.index_dir is not None

    def _open(self, offset: int) -> FileStream:
        ctx = self.ctx
        if ctx.index_dir is not None:
            root = Path(ctx.index_dir).resolve()
            path = (root / str(self.rel)).resolve()
            if root != path and root not in path.parents:
                raise source_error(self.uri, f"{path} is outside the index folder {root} (a symbolic link?)")
            return open_local(self.uri, path, offset)
        if ctx.index_repo is None:
            raise source_error(self.uri, "no index repository is known for this record",
                               hint="index: sources are read from the upstream the record came from")
        import git
        from gitdb.exc import BadName, BadObject

        try:
            repo = git.Repo(ctx.index_repo)
        except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
            raise source_error(self.uri, f"{ctx.index_repo} is not a git repository") from exc
        try:
            commit = repo.commit(ctx.index_commit or "HEAD")
            relpath = str(PurePosixPath(ctx.index_subfolder.strip("/")) / self.rel) if ctx.index_subfolder.strip("/") else str(self.rel)
            try:
                obj = commit.tree / relpath
            except KeyError:
                raise source_error(self.uri, f"no file {relpath} in {ctx.index_repo} at commit {commit.hexsha[:12]}",
                                   hint="commit the artefact beside the record, or fix the path") from None
            if obj.type != "blob":
                raise source_error(self.uri, f"{relpath} at commit {commit.hexsha[:12]} is a {obj.type}, not a file")
            total = int(obj.size)
            ostream = repo.odb.stream(obj.binsha)
        except (BadName, BadObject, ValueError, git.exc.GitCommandError) as exc:
            repo.close()
            raise source_error(self.uri, f"cannot read commit {ctx.index_commit or 'HEAD'} of {ctx.index_repo}: {exc}") from exc
        except BaseException:
            repo.close()
            raise
        # git object streams do not seek: always from the start (supports_range is False)
        return FileStream(_GitBlobReader(ostream, repo), 0, total)
