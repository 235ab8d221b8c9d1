"""registry/atomic.py: the one atomic-write helper (temporary name beside the target, rename)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from synthmed.registry import atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_text_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    atomic.write_text(target, "new ü")
    assert target.read_text("utf-8") == "new ü"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_default_mode_follows_the_umask_and_mode_is_exact(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_bytes(tmp_path / "plain", b"x")
        atomic.write_bytes(tmp_path / "shared", b"x", mode=0o644)
        atomic.write_bytes(tmp_path / "private", b"x", mode=0o600)
        atomic.write_bytes(tmp_path / "readonly", b"x", mode=0o444)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "plain") == 0o640
    assert _mode(tmp_path / "shared") == 0o644
    assert _mode(tmp_path / "private") == 0o600
    assert _mode(tmp_path / "readonly") == 0o444


def test_write_json_format_and_parents(tmp_path):
    target = tmp_path / "deep" / "er" / "x.json"
    with pytest.raises(FileNotFoundError):
        atomic.write_json(target, {"b": 1})
    assert not (tmp_path / "deep").exists()
    atomic.write_json(target, {"b": "é", "a": 1}, sort_keys=True, ensure_ascii=False, fsync=True, parents=True)
    assert target.read_text("utf-8") == json.dumps({"a": 1, "b": "é"}, indent=2, ensure_ascii=False) + "\n"


def test_a_failure_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    target = tmp_path / "t.npz"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_file(target) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]
    with atomic.atomic_file(target) as fh:
        np.savez(fh, a=np.arange(3))
    with np.load(target) as z:
        assert z["a"].tolist() == [0, 1, 2]


def test_atomic_path_named_temporary_file_or_folder(tmp_path):
    final = tmp_path / "000001.dcm"
    tmp = tmp_path / ".000001.tmp-1.dcm"
    with atomic.atomic_path(final, tmp=tmp) as t:
        assert t == tmp
        t.mkdir()
        (t / "0001.dcm").write_bytes(b"slice")
    assert (final / "0001.dcm").read_bytes() == b"slice" and not tmp.exists()
    other = tmp_path / "other.txt"
    with pytest.raises(ValueError):
        with atomic.atomic_path(other, tmp=tmp) as t:
            t.mkdir()
            (t / "x").write_bytes(b"partial")
            raise ValueError("encoder failed")
    assert not tmp.exists() and not other.exists()
    with atomic.atomic_path(other) as t:  # a name of its own
        assert t.name.startswith(".other.txt.") and t.name.endswith(".tmp")
        t.write_text("done")
    assert other.read_text() == "done"
