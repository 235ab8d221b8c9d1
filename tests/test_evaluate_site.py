"""synthmed evaluate on a fresh site synced from this repo's index: every runnable starter
is measured with the offline extractor; the values show in `show`, in `search --rank`
(within one comparability key) and in the nightly report; an unverified extractor is
refused; a reference set never appears in an export bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthmed.cli import main
from synthmed.daemon.bundle import export_bundle
from synthmed.daemon.jobs import JobContext
from synthmed.daemon.nightly import evaluate_served
from synthmed.registry.measuring import ranking
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import load_settings

from helpers import REPO_ROOT

pytestmark = pytest.mark.slow  # a site synced from this repo, models run

#: parameters that keep each starter quick (the diffusion models' fewest steps)
FAST = {"retina-patch-ddpm": ["--param", "steps=5"], "retina-patch-ldm": ["--param", "steps=5"]}
# (the pipeline and the mask DCGAN need no parameters; masks are measured as 0/255 pictures)
N = "12"


def _reference_dir(root: Path) -> Path:
    """30 small RGB and grey PNGs of smooth random blobs (any images make a valid reference)."""
    rng = np.random.default_rng(3)
    root.mkdir()
    for i in range(30):
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        im = Image.fromarray(base).resize((32, 32), Image.BILINEAR)
        (im if i % 3 else im.convert("L")).save(root / f"{i:03d}.png")
    (root / "notes.txt").write_text("not an image: skipped")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("eval-site")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    ref = _reference_dir(home.parent / "ref-images")
    assert main(["--site", str(home), "reference", "add", "blobs", str(ref)]) == 0
    return home


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_runnable_starter_is_measured_and_shown(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runnable = _json(capsys, "--site", str(site), "search", "--runnable")
    ids = sorted({e["id"] for e in runnable})  # type: ignore[union-attr]
    assert {"ihc-patch-dcgan", "ihc-patch-dcgan-medigan", "retina-patch-ddpm", "phantom-lesion"} <= set(ids)
    # a model that needs array inputs is refused with the reason (it cannot be sampled from seeds alone)
    needs = [mid for mid in ids
             if _json(capsys, "--site", str(site), "show", mid)["record"].get("array_inputs")]  # type: ignore[index]
    for mid in needs:
        capsys.readouterr()
        assert main(["--site", str(site), "evaluate", mid, "--reference", "blobs", "-n", N]) == 1
        assert "needs array input(s)" in capsys.readouterr().err
    ids = [i for i in ids if i not in needs]
    keys = set()
    for mid in ids:
        out = _json(capsys, "--site", str(site), "evaluate", mid, "--reference", "blobs", "-n", N,
                    "--kid-subsets", "5", *FAST.get(mid, []))
        (ev,) = out  # type: ignore[misc]
        assert set(ev["values"]) >= {"fd", "kid", "precision", "recall", "density", "coverage", "mmd_rbf",
                                     "ms_ssim_diversity"}, mid
        assert "cmmd" not in ev["values"], mid  # CMMD is defined on CLIP embeddings; randconv is not CLIP
        assert ev["extractor"]["trained"] is False and "NOT TRAINED" in ev["extractor"]["says"]
        assert all(np.isfinite(v) for v in ev["values"].values())
        keys.add(ev["key"])
        prov = ev["provenance"]
        assert prov["extractor"]["id"] == "randconv-224" and len(prov["extractor"]["sha256"]) == 64
        assert prov["extractor"]["input"]["resize"] == {"library": "torch.nn.functional.interpolate",
                                                        "filter": "bilinear", "antialias": True,
                                                        "align_corners": False}
        assert prov["reference"]["n"] == prov["n_real"] == 30 and prov["n_generated"] == 12
        assert prov["seeds"] == [0, 11] and prov["metrics"]["kid"]["subsets"] == 5
        assert prov["metrics"]["prdc"]["k_precision_recall"] == 3 and prov["metrics"]["prdc"]["k_density_coverage"] == 5
    assert len(keys) == 1  # measured the same way: one comparability key for every model
    shown = _json(capsys, "--site", str(site), "show", "phantom-lesion")
    evs = {e["metric"]: e for e in shown["evaluations"]}  # type: ignore[index]
    assert evs["fd"]["key"] in keys and evs["fd"]["reference"] == "blobs"
    capsys.readouterr()
    assert main(["--site", str(site), "show", "ihc-patch-dcgan"]) == 0
    assert "measured on this site" in capsys.readouterr().out

    ranked = _json(capsys, "--site", str(site), "search", "--rank", "fd", "--limit", "100")
    r = ranked["ranking"]  # type: ignore[index]
    assert (r["basis"], r["key"]) == ("measured", next(iter(keys)))
    values = [m["rank_value"] for m in ranked["models"] if m["rank_value"] is not None]  # type: ignore[index]
    assert len(values) == len(ids) and values == sorted(values)
    # a measurement made another way (another n) gets another key and is never mixed in
    _json(capsys, "--site", str(site), "evaluate", "phantom-lesion", "--reference", "blobs", "-n", "15",
          "--kid-subsets", "5")
    again = _json(capsys, "--site", str(site), "search", "--rank", "fd", "--limit", "100")
    assert again["ranking"]["key"] == next(iter(keys))  # type: ignore[index]
    assert [k["models"] for k in again["ranking"]["other_keys"]] == [1]  # type: ignore[index]
    other = again["ranking"]["other_keys"][0]["key"][:10]  # type: ignore[index]
    only = _json(capsys, "--site", str(site), "search", "--rank", "fd", "--rank-key", other, "--limit", "100")
    ranked_ids = [m["id"] for m in only["models"] if m["rank_value"] is not None]  # type: ignore[index]
    assert ranked_ids == ["phantom-lesion"]
    # medigan's rank_models_by_performance compares the same values, and says so
    from synthmed import Generators

    rows = Generators(site).rank_models_by_performance(metric="fd")
    assert [r["fd"] for r in rows] == values  # medigan's order (ascending) over the same values


def test_frd_on_a_fresh_site_reports_frd_with_the_extractor(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """#23's "done when": evaluate ihc-patch-dcgan --extractor frd-radiomics --json, offline."""
    pytest.importorskip("frd_score", reason="FRD needs the optional dependencies: pip install 'synthmed[frd]'")
    (ev,) = _json(capsys, "--site", str(site), "evaluate", "ihc-patch-dcgan", "--reference", "blobs", "-n", N,
                  "--extractor", "frd-radiomics", "--workers", "2", "--kid-subsets", "5")  # type: ignore[misc]
    assert {"frd", "kid", "precision", "recall", "density", "coverage", "mmd_rbf"} <= set(ev["values"])
    assert "fd" not in ev["values"] and "cmmd" not in ev["values"]
    assert np.isfinite(ev["values"]["frd"]) and ev["better"]["frd"] == "lower"
    prov = ev["provenance"]["extractor"]
    assert prov["id"] == "frd-radiomics" and prov["family"] == "radiomics" and prov["training"]["trained"] is False
    assert prov["software"]["packages"] == {"frd-score": "1.0.1", "pyradiomics-bhklab": "3.1.4"}
    assert ev["extractor"]["says"].startswith("radiomics features, NOT TRAINED")
    # the reference set's features are cached with the set: a second run reads them
    cached = list((site / "references" / "blobs" / "features").glob("*.npz"))
    assert len(cached) >= 2  # randconv-224's and frd-radiomics'


def test_unverified_inception_is_refused(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--site", str(site), "evaluate", "ihc-patch-dcgan", "--reference", "blobs", "-n", N,
                 "--extractor", "inception-v3-fid"]) == 1
    err = capsys.readouterr().err
    assert "inception-v3-fid@1.0.0 is unverified" in err and "pin" in err


def test_nightly_evaluation_writes_the_report(site: Path) -> None:
    from dataclasses import replace

    settings = load_settings(site)
    # the fewest samples density/coverage (k=5) allow (site.toml's [evaluation] samples takes 10 or more)
    settings = replace(settings, evaluation=replace(settings.evaluation, samples=6))
    folder = site / "reports" / "nightly-test"
    folder.mkdir(parents=True)
    (folder / "summary.md").write_text("# Model tests\n")
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        summary = evaluate_served(JobContext(settings, cat), folder)
        assert "evaluation(s)" in summary
        n_first = int(summary.split(" evaluation(s)")[0])
        assert n_first >= 4
        # measured already under the same key: nothing is done twice
        assert evaluate_served(JobContext(settings, cat), folder).startswith("0 evaluation(s)")
    md = (folder / "summary.md").read_text()
    assert "## Measured quality" in md and "public/ihc-patch-dcgan@1.0.0" in md and "randconv-224@1.0.0" in md
    data = json.loads((folder / "evaluation.json").read_text())
    assert data["format"] == "synthmed-evaluation-report/1"


def test_reference_set_never_leaves_the_site(site: Path, tmp_path: Path) -> None:
    settings = load_settings(site)
    refdir = settings.references_dir / "blobs"
    secret = {hashlib.sha256(p.read_bytes()).hexdigest() for p in refdir.rglob("*") if p.is_file()}
    manifest = json.loads((refdir / "manifest.json").read_text())
    secret |= {f["sha256"] for f in manifest["files"]}
    assert len(list((refdir / "features").glob("*.npz"))) >= 1
    dest = tmp_path / "bundle"
    with Catalog.open(settings.catalog_path) as cat:
        export_bundle(settings, cat, dest)
    files = [p for p in dest.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() not in secret, p
        assert b"references" not in data and manifest["identity"].encode() not in data, p
        assert not p.name.endswith(".npz")


def test_catalog_rebuild_keeps_the_measured_values(site: Path) -> None:
    from synthmed.daemon.rebuild import rebuild_catalog

    settings = load_settings(site)
    with Catalog.open(settings.catalog_path) as cat:
        before = cat.conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    assert before > 0
    rebuild_catalog(settings)
    with Catalog.open(settings.catalog_path) as cat:
        assert cat.conn.execute("SELECT count(*) FROM evaluations").fetchone()[0] == before
        assert ranking.choose(cat, "fd").basis == "measured"
