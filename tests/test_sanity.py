"""Extractor sanity checks (`synthmed evaluate --sanity`): the degradations are deterministic
and keep pictures pictures; a texture-aware extractor passes every check on structured
images, a broken one fails the checks it should; the stored result drives evaluate's
default extractor; bad input is refused with what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from synthmed.cli import main
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import EvaluationError
from synthmed.registry.measuring import degradations as D
from synthmed.registry.measuring import sanity
from synthmed.registry.measuring.extractors import ExtractorRecord, load_extractor_file
from synthmed.registry.measuring.reference_sets import ReferenceSet, add_reference
from synthmed.registry.settings import Settings

from helpers import REPO_ROOT

RECORD = load_extractor_file(REPO_ROOT / "index" / "extractors" / "randconv-224" / "1.0.0.json")


class TextureExtractor:
    """A small hand-made extractor that sees layout and texture: the grey image pooled to
    4x4, and the mean absolute horizontal and vertical gradient of 4 bands (24 features)."""

    record: ExtractorRecord = RECORD

    def features(self, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        a = np.asarray(images, np.float64)
        a = a.mean(-1) if a.ndim == 4 else a
        n, h, w = a.shape
        pooled = a.reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, -1)
        gx = np.abs(np.diff(a, axis=2)).reshape(n, 4, -1).mean(-1)
        gy = np.abs(np.diff(a, axis=1)).reshape(n, -1, 4).mean(1)
        return np.concatenate([pooled, 4 * gx, 4 * gy], 1)


class MeanColourExtractor:
    """A broken extractor: it sees each image's mean colour only (blind to blur and flatness)."""

    record: ExtractorRecord = RECORD

    def features(self, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        a = np.asarray(images, np.float64)
        a = a[..., None] if a.ndim == 3 else a
        return a.mean(axis=(1, 2))


class ConstantExtractor:
    """A broken extractor: the same feature vector for every image."""

    record: ExtractorRecord = RECORD

    def features(self, images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        return np.ones((len(images), 4))


def _structured(folder: Path, n: int, seed: int = 0, size: int = 32) -> Path:
    """Grey images of stripes (random frequency, angle, phase) and a blob, on a random level."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f, th = rng.uniform(2, 6), rng.uniform(0, np.pi)
        stripes = np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6.3))
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img = rng.uniform(90, 160) + 50 * stripes + 50 * blob
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def structured_set(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSet:
    root = tmp_path_factory.mktemp("sanity")
    return add_reference(Settings(home=root / "site"), "stripes", _structured(root / "imgs", 200))


# -- the degradations ------------------------------------------------------------------------


def _pictures() -> list[D.Image]:
    rng = np.random.default_rng(1)
    grey = [(rng.integers(0, 256, (24, 24), dtype=np.uint8), (0.0, 255.0)) for _ in range(6)]
    rgb = [(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8), (0.0, 255.0)) for _ in range(4)]
    deep = [(rng.integers(0, 65536, (16, 16)).astype(np.float64), (0.0, 65535.0))]
    return grey + rgb + deep


@pytest.mark.parametrize("name", D.DEGRADATIONS)
def test_degradations_are_deterministic_and_keep_shape_dtype_and_range(name: str) -> None:
    images = _pictures()
    for s in D.STRENGTHS[name]:
        once, again = D.degrade(images, name, s, seed=3), D.degrade(images, name, s, seed=3)
        for (a, vr), (b, _), (c, _) in zip(images, once, again):
            assert b.shape == a.shape and b.dtype == a.dtype and np.array_equal(b, c)
            assert b.min() >= vr[0] and b.max() <= vr[1]
    if name in ("noise", "mean"):  # the seed matters where chance does
        assert any(not np.array_equal(x[0], y[0]) for x, y in
                   zip(D.degrade(images, name, D.STRENGTHS[name][-1], 3), D.degrade(images, name, D.STRENGTHS[name][-1], 4)))


def test_degradations_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, (32, 32), dtype=np.uint8)
    images = [(img, (0.0, 255.0))]
    rough = [float(np.abs(np.diff(D.blur(img, (0, 255), s).astype(float), axis=1)).mean()) for s in (0.5, 1, 2)]
    assert rough[0] > rough[1] > rough[2]  # more blur, less detail
    assert np.array_equal(D.downup(img, (0, 255), 1.0), img)  # factor 1 changes nothing
    assert D.downup(img, (0, 255), 32.0).std() < 1  # down to 1 px: one value
    assert np.array_equal(D.shift(img, (0, 255), 0.1), np.clip(np.rint(img + 25.5), 0, 255))  # 0.1 of the range
    noisy = D.degrade(images, "noise", 0.1)[0][0].astype(float)
    assert 20 < np.std(noisy - img) < 30  # sigma 25.5 (a little less where clipped)
    # replacement by the mean image: the fractions nest, and the replaced images are the mean
    ten = [(rng.integers(0, 256, (8, 8), dtype=np.uint8), (0.0, 255.0)) for _ in range(10)]
    mean = np.rint(np.mean([a for a, _ in ten], axis=0))
    replaced = [{i for i, (a, _) in enumerate(D.degrade(ten, "mean", f)) if np.array_equal(a, mean)} for f in (0.1, 0.5)]
    assert len(replaced[0]) == 1 and len(replaced[1]) == 5 and replaced[0] <= replaced[1]
    (flat_rgb, _), = D.flat([(np.dstack([img, img // 2, np.full_like(img, 9)]), (0.0, 255.0))])
    assert all(len(np.unique(flat_rgb[..., c])) == 1 for c in range(3)) and flat_rgb[0, 0, 2] == 9


def test_bad_degradation_input_is_refused() -> None:
    with pytest.raises(EvaluationError, match="unknown degradation 'warp'"):
        D.degrade(_pictures(), "warp", 1.0)
    with pytest.raises(EvaluationError, match="strength -1"):
        D.degrade(_pictures(), "blur", -1.0)
    with pytest.raises(EvaluationError, match="value range"):
        D.degrade([(np.zeros((4, 4)), (1.0, 1.0))], "blur", 1.0)


# -- the checks ------------------------------------------------------------------------------


def test_a_texture_extractor_passes_every_check_on_structured_images(structured_set: ReferenceSet) -> None:
    r = sanity.check_extractor(structured_set, TextureExtractor(), "texture", n=100, seed=0)
    assert [c["check"] for c in r.checks] == list(sanity.CHECKS)
    assert r.passed == r.total == 7, [c["detail"] for c in r.checks if not c["passed"]]
    blur = next(c for c in r.checks if c["check"] == "blur")["values"]
    assert blur["strengths"] == list(D.STRENGTHS["blur"]) and len(blur["distances"]) == 4
    assert r.distance == "fd" and r.provenance["n_per_half"] == 100 and r.provenance["reference"]["n"] == 200


def test_broken_extractors_fail_the_checks_they_should(structured_set: ReferenceSet) -> None:
    blind = sanity.check_extractor(structured_set, MeanColourExtractor(), "mean-colour", n=100, seed=0)
    verdict = {c["check"]: c["passed"] for c in blind.checks}
    # blur and down-up sampling keep each image's mean colour, and so does the flat model
    assert not verdict["blur"] and not verdict["downup"] and not verdict["flat"]
    assert verdict["shift"]  # the one thing it sees
    const = sanity.check_extractor(structured_set, ConstantExtractor(), "constant", n=100, seed=0)
    assert const.passed == 0
    detail = next(c for c in const.checks if c["check"] == "noise")["detail"]
    assert detail.startswith("not growing from strength 0")


def test_judge_reads_nan_as_a_failure_and_ranks_the_flat_model() -> None:
    deg = {"blur": [(1.0, 2.0), (2.0, 3.0)], "noise": [(1.0, float("nan")), (2.0, 5.0)]}
    checks = {c["check"]: c for c in sanity.judge(1.0, deg, 4.0)}
    assert checks["blur"]["passed"] and not checks["noise"]["passed"] and not checks["halves"]["passed"]
    assert not checks["flat"]["passed"] and checks["flat"]["values"]["rank_from_last"] == 2


def test_too_few_images_and_bad_n_are_refused() -> None:
    with pytest.raises(EvaluationError, match="holds 3 image"):
        sanity.split_halves(3, None, 0)
    with pytest.raises(EvaluationError, match=r"-n 60: two disjoint halves of 60 images need 120 images, the "
                                               r"reference set holds 100") as exc:
        sanity.split_halves(100, 60, 0)
    assert "from 2 to 50" in (exc.value.hint or "")
    a, b = sanity.split_halves(100, None, 7)
    assert len(a) == len(b) == 50 and not set(a) & set(b)
    assert np.array_equal(sanity.split_halves(100, None, 7)[0], a)


# -- the stored result drives the default -------------------------------------------------------


class _Named:
    def __init__(self, ref: str) -> None:
        self.record = type("R", (), {"ref": ref})()


def _store(cat: Catalog, identity: str, extractor: str, passed: int) -> None:
    with cat.transaction():
        cat.sanity.record_sanity(run="r", reference="set", identity=identity, extractor=extractor, config="c",
                                 distance="fd", passed=passed, total=7, checks=[], provenance={},
                                 finished="2026-12-01T00:00:00Z")


def test_the_best_passing_extractor_is_chosen_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    unavailable: set[str] = set()

    def fake_open(catalog: Any, settings: Any, ref: str | None, *, workers: int | None = None) -> Any:
        opened.append(ref)
        if ref in unavailable:
            from synthmed.registry.errors import NotPinned

            raise NotPinned(f"extractor {ref} cannot run here")
        return _Named(ref or "randconv-224@1.0.0")

    monkeypatch.setattr(sanity, "open_extractor", fake_open)
    ref = ReferenceSet("set", tmp_path, (), "i" * 64, None)
    with Catalog.open(tmp_path / "c.db", readonly=False) as cat:
        ext, choice = sanity.open_chosen(cat, Settings(home=tmp_path), ref)
        assert opened == [None] and choice.ref == "randconv-224"
        assert choice.why == ("randconv-224 (the default): no sanity check on this reference set; "
                              "run `synthmed evaluate --sanity set`")
        _store(cat, "i" * 64, "randconv-224@1.0.0", 5)
        _store(cat, "other", "frd-radiomics@1.0.0", 7)  # another set's result does not count
        ext, choice = sanity.open_chosen(cat, Settings(home=tmp_path), ref)
        assert choice.ref == "randconv-224@1.0.0" and "passed 5 of 7 sanity checks on set" in choice.why
        _store(cat, "i" * 64, "frd-radiomics@1.0.0", 6)
        ext, choice = sanity.open_chosen(cat, Settings(home=tmp_path), ref)
        assert choice.ref == "frd-radiomics@1.0.0" and ", the most; others: randconv-224@1.0.0 5/7" in choice.why
        assert [s["extractor"] for s in choice.as_dict()["sanity"]] == ["frd-radiomics@1.0.0", "randconv-224@1.0.0"]
        _store(cat, "i" * 64, "randconv-224@1.0.0", 6)  # a newer run replaces the older: now a tie
        ext, choice = sanity.open_chosen(cat, Settings(home=tmp_path), ref)
        assert choice.ref == "frd-radiomics@1.0.0" and "as many as randconv-224@1.0.0 (ties go by" in choice.why
        unavailable.add("frd-radiomics@1.0.0")
        ext, choice = sanity.open_chosen(cat, Settings(home=tmp_path), ref)
        assert choice.ref == "randconv-224@1.0.0" and "passed over: frd-radiomics@1.0.0 cannot run here" in choice.why


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def bare_site(tmp_path: Path) -> Path:
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    Catalog.open(home / "catalog.db", readonly=False).close()
    return home


def test_cli_refuses_bad_input_with_what_to_do(bare_site: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    site = ["--site", str(bare_site)]
    capsys.readouterr()
    assert main([*site, "evaluate", "--sanity", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no reference set or folder 'nope'" in err and "synthmed reference add" in err
    three = _structured(tmp_path / "three", 3)
    assert main([*site, "reference", "add", "three", str(three), "--extractor", "no-such-extractor"]) == 1
    capsys.readouterr()
    assert main([*site, "evaluate", "--sanity", str(three)]) == 1
    err = capsys.readouterr().err
    assert "holds 3 image(s); the sanity checks need at least 4" in err
    assert main([*site, "evaluate", "--sanity", str(three), "ihc-patch-dcgan"]) == 1
    assert "takes no model and no --reference" in capsys.readouterr().err
    assert main([*site, "evaluate", "ihc-patch-dcgan"]) == 1
    assert "needs model reference(s) and --reference" in capsys.readouterr().err
    assert main([*site, "evaluate", "x", "--reference", str(three), "--extractor", "a", "--extractor", "b"]) == 1
    assert "evaluate measures with one extractor" in capsys.readouterr().err


@pytest.mark.slow  # a site synced from this repo, randconv-224 and a model run
def test_sanity_on_a_site_is_stored_and_drives_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    imgs = _structured(tmp_path / "imgs", 40)
    assert main(["--site", str(home), "reference", "add", "stripes", str(imgs)]) == 0
    site = ["--site", str(home)]

    def run(*args: str) -> Any:
        capsys.readouterr()
        assert main([*site, *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    fast = ["-n", "12", "--kid-subsets", "5"]
    (before,) = run("evaluate", "ihc-patch-dcgan", "--reference", "stripes", *fast)
    assert before["extractor_choice"]["why"].endswith("no sanity check on this reference set; "
                                                      "run `synthmed evaluate --sanity stripes`")
    out = run("evaluate", "--sanity", "stripes", "-n", "20", "--extractor", "randconv-224")
    assert out["stored"] and out["n_per_half"] == 20 and out["reference"]["name"] == "stripes"
    (res,) = out["results"]
    assert res["extractor"] == "randconv-224@1.0.0" and res["distance"] == "fd" and res["total"] == 7
    with Catalog.open(home / "catalog.db") as cat:
        (row,) = cat.sanity.latest_for(out["reference"]["identity"])
        assert row["passed"] == res["passed"] and row["checks"] == res["checks"]
    (after,) = run("evaluate", "ihc-patch-dcgan", "--reference", "stripes", *fast)
    assert after["extractor_choice"]["ref"] == "randconv-224@1.0.0"
    assert f"passed {res['passed']} of 7 sanity checks on stripes" in after["extractor_choice"]["why"]
    capsys.readouterr()  # the table, as a person reads it
    assert main([*site, "evaluate", "--sanity", "stripes", "-n", "20", "--extractor", "randconv-224",
                 "--no-record"]) == 0
    text = capsys.readouterr().out
    assert "EXTRACTOR" in text and "randconv-224@1.0.0  halves" in text and "checks passed" in text
