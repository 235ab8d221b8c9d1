"""Atomic file writes: the one way synthmed replaces a file so that a reader sees either
the old content or the new, never a part of it.

Every write goes to a temporary name in the same folder (so the rename stays on one file
system) and is renamed over the target with :func:`os.replace`; a failure or an
interruption removes the temporary file, and the target keeps its old content.

- :func:`write_bytes`, :func:`write_text`, :func:`write_json`: the whole content at once.
- :func:`atomic_file`: a binary file object to write into (a streamed manifest, ``np.savez``).
- :func:`atomic_path`: a temporary *path* the caller writes itself, a file or a folder (an
  encoder that takes a file name, a file checked before it replaces the old one); the
  caller may name it (the output folder's ``.<index>.tmp-<pid><ext>``, which its resume
  logic recognises; ``site.toml.tmp``, which a validation message names).

Temporary names made here are ``.<name>.<random>.tmp``, created exclusively (so two
writers never share one). Options the callers need:

- ``mode``: the file's permission bits, set exactly (whatever the umask). ``None`` (the
  default) gives what :func:`open` would: ``0o666`` less the umask.
- ``fsync``: flush the file to disk before the rename and the folder after it, so the new
  content survives a power cut (state that a later run resumes from).
- ``parents``: create the target's missing parent folders first.

:func:`fsync_dir` (make a rename in a folder durable) is here too; the store uses it when
it promotes a blob.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder (its entries: a rename into it), ignoring file systems that refuse."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path, mode: int | None) -> tuple[int, Path]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` exclusively; return (fd, its path)."""
    perm = 0o666 if mode is None else 0o600  # the exact mode is set once the content is in
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, mode: int | None = None, fsync: bool = False,
                parents: bool = False) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the ``with`` block ends without an error."""
    target = Path(path)
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(target, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None, fsync: bool = False,
                parents: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_file(path, mode=mode, fsync=fsync, parents=parents) as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None, fsync: bool = False,
               parents: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"), mode=mode, fsync=fsync, parents=parents)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2, sort_keys: bool = False,
               ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None,
               mode: int | None = None, fsync: bool = False, parents: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON and a final newline, atomically."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default)
    write_text(path, text + "\n", mode=mode, fsync=fsync, parents=parents)


def _remove(tmp: str) -> None:
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, tmp: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (``tmp``, or ``.<name>.<random>.tmp``) for the caller
    to write a file or a folder at; renamed over ``path`` when the ``with`` block ends
    without an error, removed (file or folder) when it does not."""
    target = Path(path)
    temp = Path(tmp) if tmp is not None else target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    with replacing(str(target), str(temp)):
        yield temp


@contextlib.contextmanager
def replacing(target: str, tmp: str) -> Iterator[None]:
    """:func:`atomic_path` on plain strings, for the caller that writes one file per sample:
    every ``Path`` made of a new file name interns that name for the life of the process
    (memory that grows with the number of samples). The caller writes ``tmp``; it is renamed
    over ``target`` when the block ends without an error, removed when it does not."""
    try:
        yield
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
