"""``synthmed index shard``: move an index folder's records to the sharded layout.

The layout itself is registry/record_paths.py's. Moving changes where each version's file is,
never its bytes: a site that follows the index applies the commit as a move (nothing is
withdrawn or re-added), and ``synthmed index check`` accepts it (``moved``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..record_paths import MODELS_DIR, parse_record_relpath, record_files, record_relpath

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    ref: str
    old: str  # relative to the index folder
    new: str


def plan_shard_moves(index_dir: Path) -> list[Move]:
    """The flat record files of an index folder and where each goes when sharded. Refused
    (ConfigError) when a target exists already: the index holds that version twice."""
    index_dir = Path(index_dir)
    if not (index_dir / MODELS_DIR).is_dir():
        raise ConfigError(f"{index_dir}: no {MODELS_DIR}/ folder", hint="pass --index with the index folder (the one "
                                                                        "holding models/)")
    moves: list[Move] = []
    for f in record_files(index_dir):
        rel = f.relative_to(index_dir).as_posix()
        key = parse_record_relpath(rel)
        if key is None or rel != record_relpath(*key):
            continue  # sharded already, or not a record path (`index validate` says why)
        target = record_relpath(*key, sharded=True)
        if (index_dir / target).exists():
            raise ConfigError(f"{index_dir}: {key[0]}@{key[1]} is at {rel} and at {target}",
                              hint="an index holds each version once: remove one of the two files, then run again")
        moves.append(Move(f"{key[0]}@{key[1]}", rel, target))
    return moves


def shard_index(index_dir: Path, *, dry_run: bool = False) -> list[Move]:
    """Move every flat record of ``index_dir`` to its sharded path (each file renamed, the
    emptied model folders removed); the moves made (or, ``dry_run``, to make)."""
    index_dir = Path(index_dir)
    moves = plan_shard_moves(index_dir)
    if dry_run:
        return moves
    for m in moves:
        dest = index_dir / m.new
        dest.parent.mkdir(exist_ok=True)
        os.rename(index_dir / m.old, dest)
    for folder in sorted({(index_dir / m.old).parent for m in moves}):
        try:
            folder.rmdir()
        except OSError:  # the folder holds other files: left as it is
            log.info("%s keeps other files; not removed", folder)
    log.info("%s: %d record(s) moved to the sharded layout", index_dir, len(moves))
    return moves
