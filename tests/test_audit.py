"""The memorisation audit (``synthmed audit``): a model whose samples are its training images
fails (the same images, or flipped with a little noise); a model with independent samples
passes; the verdict is stored with its provenance and shown by ``show``, ``status`` and the
model page; reports carry statistics and indices only; ``--matches`` writes pictures to a
private folder outside the site. Small numpy-only models run inline, so this is quick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT
from helpers.packages import make_zip
from helpers.records import package_record
from helpers.sites import make_site_home
from synthmed.cli import main
from synthmed.registry.catalog import Catalog
from synthmed.registry.measuring import memorisation as MM

EXTRACTOR = str(REPO_ROOT / "index" / "extractors" / "randconv-224" / "1.0.0.json")

#: a 32x32 grey texture made from its seed alone (blocks of 4x4 random levels, plus noise)
TEXTURE = '''
import numpy as np


def texture(seed):
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(20, 236, (8, 8)), np.ones((4, 4)))
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).round().astype(np.uint8)
'''

INDEPENDENT = TEXTURE + '''

class Model:
    def sample(self, seeds):
        return {"image": np.stack([texture(int(s)) for s in seeds])}


def build(package_dir, device):
    return Model()
'''

#: gives back its training images, flipped left-right, with a little noise
COPIER = '''
import numpy as np


class Model:
    def __init__(self, package_dir):
        self.train = np.load(package_dir / "train.npy")

    def sample(self, seeds):
        out = []
        for s in seeds:
            img = self.train[int(s) % len(self.train)][:, ::-1].astype(np.float64)
            img = img + np.random.default_rng(int(s)).normal(0, 6, img.shape)
            out.append(np.clip(img, 0, 255).round().astype(np.uint8))
        return {"image": np.stack(out)}


def build(package_dir, device):
    return Model(package_dir)
'''

IMAGE = {"name": "image", "kind": "image", "dims": 2, "shape": [32, 32], "dtype": "uint8", "channels": 1,
         "value_range": [0, 255]}


def texture(seed: int) -> np.ndarray:
    ns: dict[str, Any] = {}
    exec(TEXTURE, ns)
    return ns["texture"](seed)  # type: ignore[no-any-return]


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _record(tmp: Path, model_id: str, files: dict[str, str | bytes]) -> dict[str, Any]:
    z = make_zip(tmp / "zips" / f"{model_id}.zip", files)
    return package_record(model_id, z, outputs=[IMAGE], package_entry_point="model:build")


def _folder(root: Path, images: list[np.ndarray]) -> Path:
    root.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(root / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    train = [texture(1000 + i) for i in range(64)]
    recs = [_record(tmp, "texture", {"model.py": INDEPENDENT}),
            _record(tmp, "copier", {"model.py": COPIER, "train.npy": _npy(np.stack(train))})]
    home = make_site_home(tmp / "site", recs)
    _folder(tmp / "train", train)
    _folder(tmp / "heldout", [texture(2000 + i) for i in range(64)])
    for name in ("train", "heldout"):
        assert main(["--site", str(home), "reference", "add", name, str(tmp / name), "--extractor", EXTRACTOR]) == 0
    return home


def _audit(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = main(["--site", str(home), "audit", *args, "--extractor", EXTRACTOR, "--json"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return rc, json.loads(captured.out)


def test_own_samples_as_training_set_are_flagged_at_their_seeds_and_not_at_others(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = tmp_path / "own"
    assert main(["--site", str(site), "generate", "texture", "-n", "64", "--seed", "0", "-o", str(own),
                 "--format", "png", "--no-progress"]) == 0
    assert main(["--site", str(site), "reference", "add", "own", str(own / "image"), "--extractor", EXTRACTOR]) == 0
    rc, same = _audit(capsys, site, "texture", "--training", "own", "-n", "64", "--seed", "0")
    assert (rc, same["verdict"]) == (4, "fail")
    assert same["values"]["near_copies"] == 64 and same["values"]["pixel_similarity_max"] > 0.999
    assert {n["seed"] for n in same["near_copies"]} == set(range(64))
    rc, other = _audit(capsys, site, "texture", "--training", "own", "-n", "64", "--seed", "10000")
    assert (rc, other["verdict"]) == (0, "pass"), other["reasons"]
    assert other["values"]["near_copies"] == 0 and other["near_copies"] == []
    assert 0.5 < other["values"]["pixel_dcr_ratio"] < 2 and 0.5 < other["values"]["feature_dcr_ratio"] < 2


def test_a_model_returning_flipped_noisy_training_images_fails(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, a = _audit(capsys, site, "copier", "--training", "train", "--holdout", "heldout", "-n", "64")
    assert (rc, a["verdict"]) == (4, "fail")
    v = a["values"]
    assert v["near_copy_fraction"] == 1.0 and v["training_near_duplicate_fraction"] == 0.0
    assert v["near_copy_uninformative"] is False  # a set of distinct images: the count means something
    assert v["pixel_closer_to_training"] == 1.0 and v["pixel_dcr_p"] < 1e-6
    assert {n["transform"] for n in a["near_copies"]} == {"flip left-right"}
    # sample i (seed i) is training image i: the indices point into the set's manifest (sorted by path)
    assert all(n["training_index"] == n["seed"] for n in a["near_copies"])
    assert any("near-copies" in r for r in a["reasons"])


def test_a_model_with_independent_samples_passes(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, a = _audit(capsys, site, "texture", "--training", "train", "--holdout", "heldout", "-n", "64", "--seed", "500")
    assert (rc, a["verdict"]) == (0, "pass"), a["reasons"]
    v = a["values"]
    assert v["near_copies"] == 0 and v["pixel_dcr_p"] > REVIEW_P and v["feature_dcr_p"] > REVIEW_P
    assert abs(v["authenticity"] - v["holdout_authenticity"]) < 0.3


REVIEW_P = MM.REVIEW_DCR_P


def test_the_audit_is_stored_and_shown_without_site_paths(site: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "train-folder"
    _folder(folder, [texture(1000 + i) for i in range(20)])
    rc, a = _audit(capsys, site, "copier", "--training", str(folder), "-n", "20")
    assert rc == 4 and a["provenance"]["training_label"].startswith("dir:")
    assert str(folder) not in json.dumps(a)  # the report: statistics and indices, no path of the site
    with Catalog.open(site / "catalog.db") as cat:
        entry = cat.models.resolve("copier")
        rows = cat.audits.audits_of(entry.upstream, entry.id, entry.version, entry.record.sha256)
    assert rows[0]["verdict"] == "fail" and rows[0]["provenance"]["site_local"] == {"training": str(folder)}
    capsys.readouterr()
    assert main(["--site", str(site), "show", "copier"]) == 0
    out = capsys.readouterr().out
    assert "memorisation audit" in out and "FAIL" in out and str(folder) in out  # on the site, the path is shown
    assert main(["--site", str(site), "status"]) in (0, 3)  # 3: unhealthy (this test site never synced)
    out = capsys.readouterr().out
    assert "memorisation audits" in out and "copier" in out and "fail" in out


def test_matches_pictures_go_to_a_private_folder_outside_the_site(site: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    rc = main(["--site", str(site), "audit", "copier", "--training", "train", "-n", "12", "--extractor", EXTRACTOR,
               "--matches", str(site / "reports" / "m"), "--no-record"])
    err = capsys.readouterr().err
    assert rc == 1 and "inside the site folder" in err and "hint:" in err
    assert not (site / "reports" / "m").exists()
    rc = main(["--site", str(site), "audit", "copier", "--training", "train", "-n", "12", "--extractor", EXTRACTOR,
               "--matches", str(tmp_path / "m"), "--no-record"])
    out = capsys.readouterr().out
    assert rc == 4 and "COPIER" not in out and "FAIL" in out and "near-copies" in out
    pics = sorted((tmp_path / "m").glob("flagged-*.png"))
    assert len(pics) == 12 and (tmp_path / "m" / "README.txt").is_file()
    w, h = Image.open(pics[0]).size
    assert w > 3 * h - 10  # sample | sample turned | training image


def test_bad_audit_input_gets_clear_errors(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def err(*args: str) -> str:
        capsys.readouterr()
        assert main(["--site", str(site), "audit", *args, "--extractor", EXTRACTOR]) == 1
        e = capsys.readouterr().err
        assert e.startswith("error: ") and "hint: " in e and "Traceback" not in e, e
        return e

    assert "shares 64 image(s)" in err("copier", "--training", "train", "--holdout", "train", "-n", "12")
    assert "at least 10 samples" in err("copier", "--training", "train", "-n", "3")
    assert "no reference set or folder" in err("copier", "--training", "nope", "-n", "12")
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in err("copier", "--training", "train", "-n", "12", "--matches", str(f))


def smooth_crops(seed: int, n: int = 64, side: int = 32) -> list[np.ndarray]:
    """``n`` overlapping crops (one pixel apart) of one smooth field: a training set whose images
    are near-copies of each other (as retina patches cut from a few fundus photographs are)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.normal(0, 1, (side + 32, side + n - 1 + 32)), 6)[16:-16, 16:-16]
    field = np.clip(128 + 45 * (f - f.mean()) / f.std(), 0, 255).round().astype(np.uint8)
    return [field[:, i:i + side] for i in range(n)]


@pytest.fixture(scope="module")
def crop_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site whose training set is overlapping crops (near-duplicate rate 100%), a held-out set of
    crops of another field, a model returning its training crops (flipped, noisy) and an honest one."""
    tmp = tmp_path_factory.mktemp("crops")
    train = smooth_crops(1)
    recs = [_record(tmp, "texture", {"model.py": INDEPENDENT}),
            _record(tmp, "crop-copier", {"model.py": COPIER, "train.npy": _npy(np.stack(train))})]
    home = make_site_home(tmp / "site", recs)
    _folder(tmp / "crops", train)
    _folder(tmp / "crops-heldout", smooth_crops(2))
    for name in ("crops", "crops-heldout"):
        assert main(["--site", str(home), "reference", "add", name, str(tmp / name), "--extractor", EXTRACTOR]) == 0
    return home


def test_overlapping_crops_make_the_near_copy_count_uninformative(crop_site: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # a model giving back its training crops still fails: on the DCR test against the held-out crops
    rc, a = _audit(capsys, crop_site, "crop-copier", "--training", "crops", "--holdout", "crops-heldout", "-n", "32")
    v = a["values"]
    assert (rc, a["verdict"]) == (4, "fail"), a["reasons"]
    assert v["training_near_duplicate_fraction"] == 1.0 and v["near_copy_uninformative"] is True
    assert v["pixel_closer_to_training"] == 1.0 and v["pixel_dcr_p"] < 1e-6
    assert not any("are near-copies of training images" in r for r in a["reasons"])  # not driven by the count
    assert a["provenance"]["thresholds"]["uninformative_near_duplicate_fraction"] == MM.UNINFORMATIVE_NEAR_DUPLICATE_FRACTION
    # an honest model: flagged too (the flag is about the training set), and not failed for it
    rc, h = _audit(capsys, crop_site, "texture", "--training", "crops", "--holdout", "crops-heldout", "-n", "32")
    assert h["values"]["near_copy_uninformative"] is True and h["verdict"] != "fail", h["reasons"]
    # without a held-out set nothing can fail a copier here: review, saying why and what to do
    rc, r = _audit(capsys, crop_site, "crop-copier", "--training", "crops", "-n", "32")
    assert (rc, r["verdict"]) == (3, "review")
    assert "uninformative" in r["reasons"][0] and "--holdout" in r["reasons"][0]
    # the text output says it beside the count
    capsys.readouterr()
    assert main(["--site", str(crop_site), "audit", "crop-copier", "--training", "crops", "-n", "16",
                 "--extractor", EXTRACTOR, "--no-record"]) == 3
    out = capsys.readouterr().out
    assert "training images among themselves 100% - UNINFORMATIVE" in out


def test_second_runs_of_evaluate_and_audit_extract_nothing(crop_site: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference features are cached (a stored set under its folder, a folder given directly
    under cache/features/), and so are the generated set's: evaluate and audit share them."""
    from synthmed.registry.measuring.extractors import FeatureExtractor

    extracted: list[int] = []
    real = FeatureExtractor.features

    def counting(self: FeatureExtractor, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        extracted.append(len(images))
        return real(self, images, value_range)

    monkeypatch.setattr(FeatureExtractor, "features", counting)
    folder = _folder(tmp_path / "real", [texture(4000 + i) for i in range(20)])

    def run(*args: str) -> None:
        capsys.readouterr()
        assert main(["--site", str(crop_site), *args, "--extractor", EXTRACTOR, "--json"]) in (0, 3, 4)

    run("evaluate", "texture", "--reference", str(folder), "-n", "12", "--seed", "777")
    assert sorted(extracted) == [12, 20]  # the generated set and the folder, once each
    run("evaluate", "texture", "--reference", str(folder), "-n", "12", "--seed", "777")
    assert sorted(extracted) == [12, 20]  # nothing again
    # the same samples audited against that folder (and a stored held-out set): all from the caches
    run("audit", "texture", "--training", str(folder), "--holdout", "crops-heldout", "-n", "12", "--seed", "777")
    run("audit", "texture", "--training", "crops", "--holdout", "crops-heldout", "-n", "12", "--seed", "777")
    assert sorted(extracted) == [12, 20]
    run("audit", "texture", "--training", "crops", "-n", "12", "--seed", "778")
    assert sorted(extracted) == [12, 12, 20]  # new samples: extracted once
    run("audit", "texture", "--training", "crops", "-n", "12", "--seed", "778")
    assert sorted(extracted) == [12, 12, 20]


def test_verdict_rules_on_fixed_numbers() -> None:
    base = {"n_generated": 100, "near_copies": 0, "near_copy_fraction": 0.0, "training_near_duplicate_fraction": 0.0,
            "pixel_dcr_ratio": 1.0, "feature_dcr_ratio": 1.0, "authenticity": 0.6}
    assert MM.verdict(base) == ("pass", [])
    one = MM.verdict({**base, "near_copies": 1, "near_copy_fraction": 0.01})
    assert one[0] == "review" and "near-copies" in one[1][0]
    assert MM.verdict({**base, "near_copies": 5, "near_copy_fraction": 0.05})[0] == "fail"
    # a training set full of near-duplicates of its own: near-copies at that rate are expected
    assert MM.verdict({**base, "near_copies": 30, "near_copy_fraction": 0.3,
                       "training_near_duplicate_fraction": 0.4})[0] == "pass"
    assert MM.verdict({**base, "pixel_dcr_ratio": 0.3})[0] == "review"
    # half the training set near-duplicates of itself: the count is uninformative and drives nothing
    crops = {**base, "near_copies": 100, "near_copy_fraction": 1.0, "training_near_duplicate_fraction": 0.6}
    said = MM.verdict(crops)
    assert said[0] == "review" and len(said[1]) == 1 and "uninformative" in said[1][0]  # no held-out set: review
    held = {**crops, "pixel_closer_to_training": 0.5, "pixel_dcr_p": 0.5, "feature_closer_to_training": 0.5,
            "feature_dcr_p": 0.5, "holdout_authenticity": 0.6}
    assert MM.verdict(held) == ("pass", [])
    assert MM.verdict({**held, "training_near_duplicate_fraction": 0.4})[0] == "fail"  # below the threshold: it counts
    dcr = {**base, "pixel_closer_to_training": 0.8, "pixel_dcr_p": 1e-5, "feature_closer_to_training": 0.5,
           "feature_dcr_p": 0.5, "holdout_authenticity": 0.6}
    assert MM.verdict(dcr)[0] == "fail"
    assert MM.verdict({**dcr, "pixel_closer_to_training": 0.65, "pixel_dcr_p": 5e-3})[0] == "review"
    assert MM.verdict({**dcr, "pixel_closer_to_training": 0.5, "pixel_dcr_p": 0.5, "authenticity": 0.3})[0] == "review"
    assert MM.binomial_p_greater(64, 64) == pytest.approx(2.0 ** -64)
    assert MM.binomial_p_greater(0, 10) == 1.0


def test_similarity_finds_flips_rotations_and_contrast_changes() -> None:
    rng = np.random.default_rng(0)
    train = rng.random((5, 16, 16, 1))
    turned = np.stack([train[1][::-1], np.rot90(train[2], 1), train[3] * 0.5 + 0.2])
    sim, idx, how = MM.nearest_similarity(turned, train)
    assert np.allclose(sim, 1.0, atol=1e-5) and idx.tolist() == [1, 2, 3]
    # what turns the sample back onto the training image
    assert [MM.TRANSFORMS[h] for h in how] == ["flip up-down", "rotate 90 clockwise", "none"]
    flat = np.full((1, 16, 16, 1), 0.5)
    assert MM.nearest_similarity(flat, train)[0][0] == 0.0  # a flat image copies nothing
    loo, _, _ = MM.nearest_similarity(train, train, leave_one_out=True)
    assert (loo < 0.9).all()  # an image is never its own neighbour


def test_model_page_shows_quality_cards_and_the_audit_badge_without_site_paths(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import urllib.request

    from helpers.serving import serving
    from synthmed.registry.settings import load_settings

    folder = tmp_path / "private-real-images"
    _folder(folder, [texture(3000 + i) for i in range(16)])
    # a folder reference whose KID subsets are the whole of both sets: kid_std cannot vary and is left out
    assert main(["--site", str(site), "evaluate", "texture", "--reference", str(folder), "-n", "16",
                 "--extractor", EXTRACTOR, "--kid-subsets", "3", "--json"]) == 0
    (ev,) = json.loads(capsys.readouterr().out)
    assert "kid" in ev["values"] and "kid_std" not in ev["values"]
    assert ev["provenance"]["site_local"] == {"reference": str(folder)}
    rc, _ = _audit(capsys, site, "texture", "--training", "train", "--holdout", "heldout", "-n", "16")
    assert rc == 0
    capsys.readouterr()
    assert main(["--site", str(site), "show", "texture"]) == 0
    out = capsys.readouterr().out
    assert f"reference folder on this site: {folder}" in out  # show runs on the site: the path is there
    assert "fd ↓" in out and "recall ↑" in out and "randconv-224@1.0.0 (NOT TRAINED: He-normal random weights from seed 0)" in out and "PASS:" in out
    with serving(load_settings(site, environ={})) as url:
        html = urllib.request.urlopen(f"{url}/model/public/texture").read().decode()
        status_html = urllib.request.urlopen(f"{url}/status").read().decode()
    assert str(folder) not in html and "private-real-images" not in html  # never served
    verdicts = {v for v in ("pass", "review", "fail") if f'data-verdict="{v}"' in html}  # newest per training set
    assert "pass" in verdicts  # (an earlier test may have audited it against its own samples: fail)
    worst = next(v for v in ("fail", "review", "pass") if v in verdicts)
    assert f'id="audit-badge">memorisation audit: {worst}' in html
    assert "randconv-224@1.0.0 (NOT TRAINED: He-normal random weights from seed 0), reference folder dir:" in html
    assert "16 generated (seeds 0..15)" in html and "<details><summary>full provenance</summary>" in html
    assert "<td>↓ lower</td>" in html and "kid_std" not in html.split('id="audit"')[0].split('id="measured"')[1]
    assert 'data-audit="public/texture"' in status_html and "audit-pass" in status_html


@pytest.mark.slow  # evaluates two models against every reference set of the site first
def test_nightly_job_audits_the_configured_models_once(site: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from synthmed.daemon.jobs import JobContext
    from synthmed.daemon.nightly import EVALUATE_JOB, evaluate_served
    from synthmed.registry.settings import AuditTarget, load_settings

    settings = load_settings(site, environ={})
    targets = (AuditTarget("copier", "train", "heldout", samples=16), AuditTarget("texture", "train", samples=16),
               AuditTarget("no-such-model", "train"))
    settings = replace(settings, evaluation=replace(settings.evaluation, audits=targets, schedule="weekly",
                                                    samples=10, extractors=(EXTRACTOR,)))
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        with cat.transaction():  # as the daemon's mirror job leaves them
            for ref in ("copier", "texture"):
                cat.artefacts.set_artefact(cat.models.resolve(ref).record.sha256 or "", state="verified")
        folder = tmp_path / "night1"
        said = evaluate_served(JobContext(settings, cat), folder)
        assert "2 audit(s) (public/copier@1.0.0 fail, public/texture@1.0.0 pass), 1 not audited" in said, said
        report = json.loads((folder / "audit.json").read_text())
        assert {a["verdict"] for a in report["audits"]} == {"fail", "pass"}
        assert "no-such-model" in report["failures"][0]["model"] and "references" not in json.dumps(report)
        md = (folder / "summary.md").read_text()
        assert "Memorisation audits" in md and "| public/copier@1.0.0 | **fail** |" in md
        assert cat.jobs.runs(EVALUATE_JOB, limit=1)[0]["changed"] >= 2
        # weekly: not due again tonight; a week later, audited the same way already: skipped
        assert evaluate_served(JobContext(settings, cat), tmp_path / "night2") == ""
        from datetime import datetime, timedelta, timezone

        later = datetime.now(timezone.utc) + timedelta(days=8)
        said = evaluate_served(JobContext(settings, cat), tmp_path / "night3", later)
        assert "0 audit(s) (none new)" in said, said
        off = replace(settings, evaluation=replace(settings.evaluation, schedule="off"))
        assert evaluate_served(JobContext(off, cat), tmp_path / "night4", later) == ""


def test_evaluation_settings_in_site_toml(tmp_path: Path) -> None:
    from synthmed.registry.errors import ConfigError
    from synthmed.registry.settings import load_settings

    home = tmp_path / "s"
    home.mkdir()
    (home / "site.toml").write_text(
        '[evaluation]\nsamples = 300\nextractors = ["randconv-224", "public/frd-radiomics"]\nschedule = "weekly"\n\n'
        '[[evaluation.audit]]\nmodel = "public/retina-patch-ddpm"\ntraining = "retina-train"\n'
        'holdout = "retina-heldout"\nsamples = 100\n\n[[evaluation.audit]]\nmodel = "ihc-patch-dcgan"\n'
        'training = "/data/ihc-train"\n')
    ev = load_settings(home, environ={}).evaluation
    assert (ev.samples, ev.extractors, ev.schedule) == (300, ("randconv-224", "public/frd-radiomics"), "weekly")
    assert [(a.model, a.training, a.holdout, a.samples) for a in ev.audits] == [
        ("public/retina-patch-ddpm", "retina-train", "retina-heldout", 100), ("ihc-patch-dcgan", "/data/ihc-train",
                                                                              None, 200)]
    assert load_settings(tmp_path / "none", environ={}).evaluation.schedule == "nightly"
    (home / "site.toml").write_text('[evaluation]\nschedule = "hourly"\n[[evaluation.audit]]\nmodel = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(home, environ={})
    assert "evaluation" in str(err.value) and "schedule" in str(err.value) and "training" in str(err.value)
