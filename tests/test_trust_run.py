"""Issue 11, findings 3, 4, 10 and 11: nothing runs that was not verified.

3: a blob that rots in place (size, inode and mtime kept) is re-hashed before it is
unpacked. 4: an unpacked package is checked entry by entry without following links, and
its manifest against its blob. 10: the worker protocol carries JSON and numeric arrays,
never a pickle. 11: medigan-1 calls run in a folder of their own and the caller's working
directory is restored.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tarfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.packages import build_package, catalog_entry, make_zip
from helpers.records import artefact_of, package_record, to_record
from synthmed.registry.errors import ModelRunError, UnsafeArchive
from synthmed.registry.packages import prepare
from synthmed.registry.runner import Runner
from synthmed.registry.settings import Settings
from synthmed.registry.artefacts.store import Store
from helpers.sites import with_file_roots
from synthmed.registry.artefacts.packages_folder import PackagesFolder

# --- finding 3: bit rot after verification ---------------------------------------------

ROT_CODE = b"VALUE = 1111\n\n\ndef build(package_dir, device):\n    return None\n"


def _tar_package(tmp: Path, model_id: str) -> tuple[Any, Path]:
    """A tar package (tar has no checksum over its data: rotten bytes unpack silently)."""
    tar = tmp / f"{model_id}.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("rotmod.py")
        info.size, info.mtime, info.mode = len(ROT_CODE), 0, 0o644
        tf.addfile(info, io.BytesIO(ROT_CODE))
    data = package_record(model_id, package_entry_point="rotmod:build")
    data["package"]["artefact"] = artefact_of(tar, media_type="application/x-tar")
    return to_record(data, f"{model_id}.json"), tar


def _rot_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes of a file in place, keeping its size, inode and mtime."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    data = path.read_bytes()
    at = data.index(old)
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(new)
    os.chmod(path, 0o444)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


def test_a_blob_rotten_in_place_is_rehashed_quarantined_and_fetched_again(tmp_path: Path) -> None:
    record, tar = _tar_package(tmp_path, "rot-model")
    settings = with_file_roots(Settings(home=tmp_path / "site"), tmp_path)
    first = prepare(catalog_entry(record), settings)
    assert first.source.startswith("file://")
    store = Store(settings.store_dir)
    with store.open_verified(first.sha256):  # the store remembers it as verified
        pass
    _rot_in_place(store.blob_path(first.sha256), b"1111", b"6666")
    PackagesFolder(settings.packages_dir).remove(first.sha256)  # it must be unpacked again, from the blob
    again = prepare(catalog_entry(record), settings)
    assert (again.folder / "rotmod.py").read_bytes() == ROT_CODE  # never the rotten bytes
    assert again.source.startswith("file://")  # fetched again from its source
    notes = store.quarantined()
    assert len(notes) == 1 and notes[0]["expected_sha256"] == first.sha256
    assert store.blob_path(first.sha256).read_bytes() == tar.read_bytes()


# --- finding 4: planted entries in an unpacked package -----------------------------------

OPTIONAL_IMPORT = '''
import numpy as np

try:
    from . import extra  # an optional module: a planted one would be imported
except ImportError:
    extra = None


class M:
    def sample(self, seeds):
        return {"image": np.zeros((len(seeds), 8, 8), dtype=np.uint8)}


def build(package_dir, device):
    return M()
'''


def _planted(tmp: Path) -> tuple[Path, Path]:
    """A folder outside any package holding a module that leaves a marker when imported."""
    marker = tmp / "PLANTED_CODE_RAN"
    evil = tmp / "outside"
    (evil / "extra").mkdir(parents=True)
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (evil / "extra" / "__init__.py").write_text(code)
    (evil / "extra.py").write_text(code)
    return evil, marker


def _site_package(tmp: Path, model_id: str, files: dict[str, str] | None = None) -> tuple[Any, Settings, Path]:
    record, _, _ = build_package(tmp / "src", model_id, files or {"m.py": OPTIONAL_IMPORT},
                                 package_entry_point="m:build")
    settings = with_file_roots(Settings(home=tmp / "site"), tmp / "src")
    pkg = prepare(catalog_entry(record), settings)
    os.chmod(pkg.folder, 0o755)  # an attacker (or a careless admin) makes it writable first
    return record, settings, pkg.folder


def _verify_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    from synthmed.cli import main

    capsys.readouterr()
    rc = main(["--site", str(settings.home), "verify", "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_a_planted_directory_symlink_is_never_imported_and_verify_reports_it(tmp_path: Path, capsys) -> None:
    evil, marker = _planted(tmp_path)
    record, settings, folder = _site_package(tmp_path, "symlink-dir-model")
    os.symlink(evil / "extra", folder / "extra", target_is_directory=True)
    assert "symbolic link extra" in (PackagesFolder(settings.packages_dir).check(record.sha256) or "")
    pkg = prepare(catalog_entry(record), settings)
    assert not os.path.lexists(pkg.folder / "extra")  # re-unpacked from the verified blob
    with Runner(pkg, mode="inline") as r:
        assert r.sample([0, 1])["image"].shape == (2, 8, 8)
    assert not marker.exists()
    # `synthmed verify` reports it too
    os.chmod(pkg.folder, 0o755)
    os.symlink(evil / "extra", pkg.folder / "extra", target_is_directory=True)
    rc, report = _verify_json(settings, capsys)
    assert rc == 1 and [b["sha256"] for b in report["changed_packages"]] == [record.sha256]
    assert "symbolic link extra" in report["changed_packages"][0]["reason"]
    assert (evil / "extra" / "__init__.py").is_file()  # the link's target is left alone


def test_a_file_replaced_by_a_symlink_to_identical_bytes_outside_is_refused(tmp_path: Path, capsys) -> None:
    record, settings, folder = _site_package(tmp_path, "symlink-file-model")
    outside = tmp_path / "outside-m.py"
    shutil.copyfile(folder / "m.py", outside)  # the same bytes today; the attacker edits them later
    os.unlink(folder / "m.py")
    os.symlink(outside, folder / "m.py")
    assert "symbolic link m.py" in (PackagesFolder(settings.packages_dir).check(record.sha256) or "")
    rc, report = _verify_json(settings, capsys)
    assert rc == 1 and "symbolic link m.py" in report["changed_packages"][0]["reason"]
    pkg = prepare(catalog_entry(record), settings)
    assert not (pkg.folder / "m.py").is_symlink() and outside.is_file()


def test_a_file_replaced_by_a_hard_link_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    record, settings, folder = _site_package(tmp_path, "hardlink-model")
    outside = tmp_path / "outside-m.py"
    shutil.copyfile(folder / "m.py", outside)
    os.unlink(folder / "m.py")
    os.link(outside, folder / "m.py")  # same bytes, but changing `outside` changes the package
    assert "hard link m.py" in (PackagesFolder(settings.packages_dir).check(record.sha256) or "")
    pkg = prepare(catalog_entry(record), settings)
    assert os.stat(pkg.folder / "m.py").st_nlink == 1 and outside.is_file()


def test_a_package_folder_replaced_by_a_symlink_is_removed_not_followed(tmp_path: Path) -> None:
    record, settings, folder = _site_package(tmp_path, "symlink-root-model")
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy, symlinks=True)  # identical content, in a folder the attacker owns
    os.chmod(folder, 0o755)
    PackagesFolder(settings.packages_dir).remove(record.sha256)
    os.symlink(copy, folder, target_is_directory=True)
    assert "not a folder" in (PackagesFolder(settings.packages_dir).check(record.sha256) or "")
    pkg = prepare(catalog_entry(record), settings)
    assert not pkg.folder.is_symlink() and pkg.folder.is_dir()
    assert (copy / "m.py").is_file()  # the link was removed, its target left alone


def _add_to_manifest(settings: Settings, sha: str, name: str, entry: list[Any]) -> None:
    path = PackagesFolder(settings.packages_dir).manifest_path(sha)
    doc = json.loads(path.read_text())
    (doc["entries"] if "entries" in doc else doc)[name] = entry
    os.chmod(path, 0o644)
    path.write_text(json.dumps(doc))


def test_a_manifest_rewritten_to_list_a_planted_module_is_caught_against_the_blob(tmp_path: Path) -> None:
    import hashlib

    _, marker = _planted(tmp_path)
    record, settings, folder = _site_package(tmp_path, "manifest-model")
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n".encode()
    (folder / "extra.py").write_bytes(code)
    _add_to_manifest(settings, record.sha256, "extra.py", [len(code), hashlib.sha256(code).hexdigest()])
    pkg = prepare(catalog_entry(record), settings)
    assert not (pkg.folder / "extra.py").exists()
    with Runner(pkg, mode="inline") as r:
        r.sample([0])
    assert not marker.exists()


def test_verify_recomputes_the_manifest_from_the_blob(tmp_path: Path, capsys) -> None:
    """Changed bytes of the same size, with the manifest rewritten to match: `verify`
    re-reads every entry of the verified blob and catches it."""
    import hashlib

    record, settings, folder = _site_package(tmp_path, "deep-model")
    original = (folder / "m.py").read_bytes()
    forged = original.replace(b"extra = None", b"extra = 1234")
    assert len(forged) == len(original) and forged != original
    os.chmod(folder / "m.py", 0o644)
    (folder / "m.py").write_bytes(forged)
    _add_to_manifest(settings, record.sha256, "m.py", [len(forged), hashlib.sha256(forged).hexdigest()])
    rc, report = _verify_json(settings, capsys)
    assert rc == 1 and "disagrees with its blob on: m.py" in report["changed_packages"][0]["reason"]
    assert prepare(catalog_entry(record), settings).folder.joinpath("m.py").read_bytes() == original


@pytest.mark.parametrize("a, b", [
    (unicodedata.normalize("NFC", "café.py"), unicodedata.normalize("NFD", "café.py")),  # NFC / NFD
    ("Ⅸ/m.py", "ix/m.py"),  # a compatibility character (ROMAN NUMERAL NINE) and its letters
    ("Model.py", "model.py"),  # case folding (held before too)
])
def test_names_that_collide_after_normalisation_or_case_folding_are_refused(tmp_path: Path, a: str, b: str) -> None:
    assert a != b
    z = make_zip(tmp_path / "collide.zip", [(a, b"x = 1\n"), (b, b"x = 2\n")])
    pk = tmp_path / "packages"
    with pytest.raises(UnsafeArchive, match="duplicate name"):
        PackagesFolder(pk).unpack_package(z, "c" * 64, "application/zip")
    assert not (pk / ("c" * 64)).exists()


# --- finding 10: the worker protocol carries no pickles ------------------------------------

#: ``sample`` returns an object array of objects whose unpickling writes a marker
OBJECT_MODEL = '''
import numpy as np

MARKER = {marker!r}


class Evil:
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('unpickled in the caller')" % MARKER,))


class M:
    def sample(self, seeds):
        out = np.empty((len(seeds), 8, 8), dtype=object)
        out[...] = Evil()
        return {{"image": out}}


def build(package_dir, device):
    return M()
'''

#: ``sample`` writes a forged pickle message straight onto the worker's protocol pipe
FORGING_MODEL = '''
import os
import pickle
import struct

import numpy as np

MARKER = {marker!r}


class Evil:
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('unpickled in the caller')" % MARKER,))


class M:
    def sample(self, seeds):
        data = pickle.dumps({{"ok": True, "outputs": Evil()}}, protocol=5)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd <= 2:
                continue
            try:
                if os.readlink(f"/proc/self/fd/{{fd}}").startswith("pipe:"):
                    os.write(fd, struct.pack(">Q", len(data)) + data)
            except OSError:
                pass
        return {{"image": np.zeros((len(seeds), 8, 8), dtype=np.uint8)}}


def build(package_dir, device):
    return M()
'''


@pytest.mark.parametrize("mode", ["worker", "inline"])
def test_an_object_array_from_a_model_is_refused_and_never_unpickled(tmp_path: Path, mode: str) -> None:
    marker = tmp_path / "UNPICKLED"
    _, pkg, _ = build_package(tmp_path, f"object-model-{mode}", {"om.py": OBJECT_MODEL.format(marker=str(marker))},
                              package_entry_point="om:build")
    with Runner(pkg, mode=mode, timeout_s=60) as r:
        with pytest.raises(ModelRunError, match="dtype object"):
            r.sample([0, 1])
    assert not marker.exists()


def test_a_pickle_forged_onto_the_protocol_pipe_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "UNPICKLED"
    _, pkg, _ = build_package(tmp_path, "forging-model", {"fm.py": FORGING_MODEL.format(marker=str(marker))},
                              package_entry_point="fm:build")
    with Runner(pkg, mode="worker", timeout_s=60) as r:
        with pytest.raises(ModelRunError, match="outside the worker protocol"):
            r.sample([0, 1])
    assert not marker.exists()


def test_protocol_round_trip_and_refusals() -> None:
    from synthmed.registry.runner import protocol

    arrays = {"image": np.arange(24, dtype=np.uint16).reshape(2, 3, 4), "mask": np.ones((2, 3), dtype=bool),
              "f": np.asfortranarray(np.random.default_rng(0).random((3, 5)))}
    msg, got = protocol.decode(protocol.encode({"ok": True, "n": np.int64(3), "t": (1, 2)}, arrays))
    assert msg == {"ok": True, "n": 3, "t": [1, 2]} and list(got) == list(arrays)
    for name, arr in arrays.items():
        assert got[name].dtype == arr.dtype and np.array_equal(got[name], arr) and got[name].flags.writeable
    with pytest.raises(protocol.ProtocolError, match="dtype object"):
        protocol.encode({}, {"x": np.array([object()], dtype=object)})
    # an .npy whose body is a pickle (an object array) is refused when read
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([1, "a"], dtype=object), allow_pickle=True)
    body = json.dumps({"arrays": ["x"]}).encode()
    forged = (protocol.JSON_HEADER.pack(len(body)) + body + protocol.HEADER.pack(len(buf.getvalue()))
              + buf.getvalue())
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(forged)
    for bad in (pickle.dumps({"ok": True}), b"", protocol.JSON_HEADER.pack(2) + b"[]",
                protocol.JSON_HEADER.pack(5000) + b"{}", protocol.JSON_HEADER.pack(2) + b"{}" + b"junk",
                protocol.JSON_HEADER.pack(13) + b'{"arrays": 1}',
                protocol.JSON_HEADER.pack(5000) + b"[" * 5000):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(bad)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(protocol.JSON_HEADER.pack(len(deep)) + deep)


# --- finding 11: medigan-1 and the working directory -----------------------------------------

#: a medigan-style model (numpy only) that writes relative to its working directory and
#: then changes it to its output folder, as some medigan models do
CHDIR_MEDIGAN = '''
import os

import numpy as np


def generate(model_file, num_samples, output_path, save_images, **kwargs):
    with open("scratch.txt", "w") as fh:  # relative: lands in whatever the cwd is
        fh.write("medigan scratch")
    os.makedirs(output_path, exist_ok=True)
    os.chdir(output_path)
    w = np.load(model_file)
    rng = np.random.default_rng(int(np.random.randint(0, 2**31)))
    return [(rng.integers(0, 256, (6, 6, 1)) + w[0]).astype(np.uint8) for _ in range(num_samples)]
'''


def _chdir_medigan(tmp: Path) -> Any:
    buf = io.BytesIO()
    np.save(buf, np.zeros(1, dtype=np.int64))
    files = {"chdir_gan/__init__.py": CHDIR_MEDIGAN, "chdir_gan/w.npy": buf.getvalue()}
    outputs = [{"name": "image", "kind": "image", "dims": 2, "shape": [6, 6], "dtype": "uint8", "channels": 1,
                "value_range": [0, 255]}]
    _, pkg, _ = build_package(tmp, "chdir-medigan", files, package_format="medigan-1",
                              package_entry_point="chdir_gan", package_weights="chdir_gan/w.npy", outputs=outputs)
    return pkg


@pytest.mark.parametrize("mode", ["inline", "worker"])
@pytest.mark.slow
def test_a_medigan_model_that_changes_the_cwd_gives_samples_and_leaves_the_cwd(tmp_path: Path, mode: str,
                                                                                monkeypatch) -> None:
    pkg = _chdir_medigan(tmp_path)
    caller = tmp_path / "caller-cwd"
    caller.mkdir()
    monkeypatch.chdir(caller)
    with Runner(pkg, mode=mode, medigan_chunk=2, timeout_s=120) as r:
        first = r.sample([0, 1, 2])["image"]
        assert os.getcwd() == str(caller)
        again = r.sample([2])["image"]
    assert first.shape[:3] == (3, 6, 6) and np.array_equal(first[2], again[0])
    assert os.getcwd() == str(caller)
    assert os.listdir(caller) == []  # nothing the model wrote relative to its cwd lands here
