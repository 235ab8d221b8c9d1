"""zenodo: sources against the Zenodo REST emulator, with the real zenodo-client."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from helpers.sites import fast_settings
from synthmed.registry.errors import ArtefactNotFound
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.sources.zenodo import make_client
from synthmed.registry.artefacts.store import Store
from helpers.zenodo import ZenodoEmulator

DATA = os.urandom(150_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def zen():
    with ZenodoEmulator(tokens={"tok-alice"}) as z:
        yield z


def site_for(tmp_path: Path, zen: ZenodoEmulator, token: str | None = None):
    s = fast_settings(tmp_path / "site")
    s = replace(s, sources=replace(s.sources, zenodo_host=zen.base, zenodo_token=token))
    return s, Store(s.store_dir), SourceContext(settings=s)


def test_download_public_record_without_token(tmp_path: Path, zen) -> None:
    rid = zen.publish_record({"model.zip": DATA, "README.md": b"hi"})
    settings, store, ctx = site_for(tmp_path, zen)
    res = store.fetch(SHA, len(DATA), [f"zenodo:{rid}/model.zip"], ctx)
    assert res.path.read_bytes() == DATA and res.source == f"zenodo:{rid}/model.zip"
    # the dummy token zenodo-client insists on is never sent
    assert all("access_token" not in p and "Authorization" not in h for _, p, h in zen.requests)


def test_download_with_token_sends_it_to_zenodo_only(tmp_path: Path, zen) -> None:
    rid = zen.publish_record({"w.pt": DATA})
    settings, store, ctx = site_for(tmp_path, zen, token="tok-alice")
    store.fetch(SHA, len(DATA), [f"zenodo:{rid}/w.pt"], ctx)
    file_reqs = [h for m, p, h in zen.requests if p.endswith("/content")]
    assert file_reqs and file_reqs[0]["Authorization"] == "Bearer tok-alice"


def test_tampered_file_is_caught(tmp_path: Path, zen) -> None:
    rid = zen.publish_record({"model.zip": DATA})
    zen.tamper(rid, "model.zip")
    settings, store, ctx = site_for(tmp_path, zen)
    good = tmp_path / "good.zip"
    good.write_bytes(DATA)
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [f"zenodo:{rid}/model.zip"], ctx)
    assert f"zenodo:{rid}/model.zip" in str(ei.value) and "hash" in str(ei.value)
    assert not store.has(SHA) and store.quarantined()[0]["source"] == f"zenodo:{rid}/model.zip"
    res = store.fetch(SHA, len(DATA), [f"zenodo:{rid}/model.zip", good.as_uri()], ctx)
    assert res.source == good.as_uri()


def test_missing_record_and_file(tmp_path: Path, zen) -> None:
    rid = zen.publish_record({"a.bin": DATA})
    settings, store, ctx = site_for(tmp_path, zen)
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [f"zenodo:{rid}/b.bin", "zenodo:999999/a.bin"], ctx)
    msg = str(ei.value)
    assert f"zenodo:{rid}/b.bin: Zenodo record {rid} has no file 'b.bin' (files: a.bin)" in msg
    assert "zenodo:999999/a.bin: Zenodo record 999999 look-up" in msg and "HTTP 404" in msg


def test_real_client_deposit_publish_and_download(tmp_path: Path, zen) -> None:
    settings, store, ctx = site_for(tmp_path, zen, token="tok-alice")
    z = make_client(settings)
    f = tmp_path / "model.zip"
    f.write_bytes(DATA)
    md = {"metadata": {"title": "toy", "upload_type": "software", "description": "a toy",
                       "creators": [{"name": "Tester"}], "version": "1.0.0"}}
    res = z.create(md, [f], publish=False)
    dep = res.json()
    assert dep["submitted"] is False and dep["files"][0]["key"] == "model.zip"
    pub = z.publish(dep["id"], sleep=False).json()
    assert pub["submitted"] is True and pub["doi"]
    rec = z.get_record(dep["id"]).json()
    assert rec["files"][0]["checksum"] == "md5:" + hashlib.md5(DATA).hexdigest()
    assert z.get_latest_record(dep["id"]) == str(dep["id"])
    # new version through the client's update flow
    f2 = tmp_path / "model-v2.zip"
    f2.write_bytes(DATA + b"v2")
    upd = z.update(str(dep["id"]), [f2], publish=False).json()
    assert upd["id"] == dep["id"]
    # and our source downloads the published file
    out = store.fetch(SHA, len(DATA), [f"zenodo:{dep['id']}/model.zip"], ctx)
    assert out.path.read_bytes() == DATA


def test_emulator_checks_tokens(zen) -> None:
    r = requests.post(f"{zen.base}/api/deposit/depositions", json={}, timeout=5)
    assert r.status_code == 401
    r = requests.post(f"{zen.base}/api/deposit/depositions", json={}, params={"access_token": "wrong"}, timeout=5)
    assert r.status_code == 401
    r = requests.post(f"{zen.base}/api/deposit/depositions", json={}, headers={"Authorization": "Bearer tok-alice"},
                      timeout=5)
    assert r.status_code == 201
    did = r.json()["id"]
    # publishing without metadata or files is refused, as Zenodo does
    r = requests.post(f"{zen.base}/api/deposit/depositions/{did}/actions/publish",
                      params={"access_token": "tok-alice"}, timeout=5)
    assert r.status_code == 400 and r.json()["errors"]
    rid = zen.publish_record({"x": b"1"})
    assert requests.get(f"{zen.base}/api/records/{rid}", timeout=5).status_code == 200
    assert requests.get(f"{zen.base}/api/records/{rid}", params={"access_token": "bad"}, timeout=5).status_code == 401
