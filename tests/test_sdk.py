"""The Site API through the real catalog and mirror: resolve, fetch on demand
(verified), sample, generate_to; offline, unverified and tampered packages refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.packages import toy_package, volume_package
from helpers.records import package_record
from helpers.sites import make_site_home
from synthmed import Site
from synthmed.registry.errors import ArtefactNotFound, ParamError, SiteNotFound, SynthmedError, Unverified
from synthmed.registry.settings import load_settings


@pytest.fixture
def site(tmp_path: Path, toy_gan) -> Site:
    rec, _, _ = toy_gan
    vol, _, _ = volume_package(tmp_path / "b")
    home = make_site_home(tmp_path / "site", [dict(rec.data), dict(vol.data)])
    return Site(home)


def test_site_fetches_on_demand_and_samples(site: Site) -> None:
    assert [e.id for e in site.list_models()] == ["toy-gan", "toy-volume"]
    assert [e.id for e in site.search("volume")] == ["toy-volume"]
    model = site.model("toy-gan")
    assert model.ref == "public/toy-gan@1.0.0"
    sha = model.record.sha256
    assert model.package_dir == site.settings.packages_dir / sha  # unpacked from the verified store
    assert (site.settings.store_dir / "blobs" / "sha256" / sha[:2]).is_dir()
    a = model.sample(10, seed=5)
    b = model.sample_seeds(range(5, 15))
    assert a["image"].shape == (10, 8, 8) and np.array_equal(a["image"], b["image"])
    with pytest.raises(ParamError, match="'label'"):
        model.sample(1, label="nope")
    model.close()
    # a second Site reuses the package without fetching (offline is fine now)
    again = Site(site.home, offline=True).model("toy-gan@1.0.0")
    assert np.array_equal(again.sample(10, seed=5)["image"], a["image"])


def test_generate_to_through_the_site(site: Site, tmp_path: Path) -> None:
    m = site.model("toy-volume")
    res = m.generate_to(tmp_path / "out", 3, format="nifti", seed=1, batch_size=2)
    assert res.written == 3
    side = json.loads((tmp_path / "out" / "synthmed.json").read_text())
    assert side["model"]["upstream"] == "public" and side["outputs"][0]["spacing_mm"] == [0.5, 0.75, 2.0]
    assert side["runner"]["batch_size"] == 2


def test_offline_site_without_the_package_says_what_to_do(site: Site) -> None:
    offline = Site(site.home, offline=True)
    with pytest.raises(ArtefactNotFound) as ei:
        offline.model("toy-gan")
    assert "offline" in str(ei.value) and "synthmed daemon run --once" in str(ei.value)


def test_unverified_record_is_searchable_but_never_runs(tmp_path: Path) -> None:
    rec, _, _ = toy_package(tmp_path / "a")
    data = copy.deepcopy(dict(rec.data))
    data["id"] = "unpinned-gan"
    del data["package"]["artefact"]["sha256"]
    home = make_site_home(tmp_path / "site", [data])
    site = Site(home)
    assert [e.id for e in site.search("toy")] == ["unpinned-gan"]
    with pytest.raises(Unverified) as ei:
        site.model("unpinned-gan")
    assert "synthmed index pin unpinned-gan@1.0.0" in str(ei.value)
    assert not site.settings.packages_dir.exists()


def test_tampered_artefact_is_refused(tmp_path: Path) -> None:
    rec, _, zip_path = toy_package(tmp_path / "a")
    data = dict(rec.data)
    home = make_site_home(tmp_path / "site", [data])
    zip_path.write_bytes(zip_path.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(SynthmedError) as ei:
        Site(home).model("toy-gan")
    text = str(ei.value)
    assert "toy-gan" in text and "not the pinned" in text
    assert "synthmed verify" in text and "synthmed index pin toy-gan@1.0.0" in text
    assert not (Site(home).settings.packages_dir / rec.sha256).exists()  # type: ignore[operator]


def test_no_site_gives_setup_hint(tmp_path: Path) -> None:
    site = Site(settings=load_settings(tmp_path / "nowhere", environ={}))
    with pytest.raises(SiteNotFound) as ei:
        site.list_models()
    assert "synthmed init" in str(ei.value) and str(tmp_path / "nowhere") in str(ei.value)


def test_package_record_is_valid(tmp_path: Path) -> None:
    zip_path = tmp_path / "x.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert package_record("some-model", zip_path)["package"]["artefact"]["size"] == 22
