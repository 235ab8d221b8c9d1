"""A site that serves, end to end: site A built as the main job builds one (scripts/main-job.sh:
init from this repository, sync, `synthmed test` of the starters with the reports written
outside the site); its catalogue checked in headless Chromium; then a chain of three sites
(A -> B -> C) where each follows the one before over HTTP (git smart HTTP for the index, the
store as its mirror), a substituted blob anywhere is refused, and C verifies everything itself.

The browser is Debian's ``chromium`` driven by selenium through Debian's ``chromium-driver``
(explicit paths: nothing is downloaded at run time); .ci/run installs both. Set
``SYNTHMED_SCREENSHOTS=DIR`` to keep screenshots of the pages (docs/img's come from here).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from synthmed.cli import main
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.artefacts.store import Store

from helpers import REPO_ROOT
from helpers.serving import serving, this_index

pytestmark = pytest.mark.slow  # the starters' model tests: about 70 s on 2 idle cores, 4 minutes on busy ones

STARTERS, N_MODELS, N_BLOBS = this_index()  # the pinned starters of index/ (4 medigan-era + new ones)
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def site_a(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The main job's steps (scripts/main-job.sh), with its MODELS."""
    home = tmp_path_factory.mktemp("site-a")
    out = tmp_path_factory.mktemp("out")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}", "--name", "site-a"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    assert main(["--site", str(home), "test", *STARTERS, "--report", str(out / "reports")]) == 0
    return load_settings(home)


@pytest.fixture(scope="module")
def url_a(site_a: Settings) -> Iterator[str]:
    with serving(site_a) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never fetches a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    folder = os.environ.get("SYNTHMED_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(int(height), 800), 2400))
        driver.save_screenshot(str(Path(folder) / name))
        driver.set_window_size(1280, 1400)


def test_browser_every_starter_with_its_grid_and_test_status(site_a: Settings, url_a: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url_a + "/")
    rows = {r.get_attribute("data-ref"): r for r in browser.find_elements(By.CSS_SELECTOR, "#results tr[data-ref]")}
    unverified = [r.get_attribute("data-ref") for r in
                  browser.find_elements(By.CSS_SELECTOR, "#unverified-results tr[data-ref]")]
    assert len(rows) + len(unverified) == N_MODELS  # the starters + 15 medigan records (latest versions)
    assert any(r.startswith("public/00001_dcgan_mmg_calc_roi@") for r in unverified)  # unverified: apart
    for model in STARTERS:
        ref = next(r for r in rows if r.startswith(f"public/{model}@"))
        badge = rows[ref].find_element(By.CSS_SELECTOR, "[data-test]")
        assert badge.get_attribute("data-test") == "passed", (ref, badge.text)
        thumb = rows[ref].find_element(By.CSS_SELECTOR, "td.thumb img")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb) > 0
    _shot(browser, "serve-search.png")
    for model in STARTERS:
        browser.get(f"{url_a}/model/public/{model}")
        img = browser.find_element(By.ID, "grid")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0, model
        assert browser.find_element(By.CSS_SELECTOR, "#last-test [data-test]").get_attribute("data-test") == "passed"
        sha = browser.find_element(By.ID, "sha256").text
        assert Store(site_a.store_dir).has(sha)
        if model == "retina-patch-ddpm":
            _shot(browser, "serve-model.png")
    # a facet narrows the search: click the CT modality
    browser.get(url_a + "/")
    # the controlled vocabulary: one entry per modality, shown by its display name and code
    facet = browser.find_element(By.CSS_SELECTOR, 'ul[data-facet="modality"]')
    names = [a.text for a in facet.find_elements(By.TAG_NAME, "a")]
    assert "Mammography (MG)" in names and not [n for n in names if "mmg" in n.lower() and n != "Mammography (MG)"]
    assert not browser.find_elements(By.CSS_SELECTOR, 'details[data-facet-more="modality"]')
    facet.find_element(By.LINK_TEXT, "Computed tomography (CT)").click()
    refs = [r.get_attribute("data-ref") for r in browser.find_elements(By.CSS_SELECTOR, "#results tr[data-ref]")]
    assert refs == ["public/phantom-lesion@1.0.0"]
    # free text from the search box
    box = browser.find_element(By.NAME, "q")
    box.clear()
    box.send_keys("fundus")
    box.submit()
    refs = [r.get_attribute("data-ref") for r in browser.find_elements(By.CSS_SELECTOR, "#results tr[data-ref]")]
    assert refs == []  # the CT facet still applies
    browser.find_element(By.CSS_SELECTOR, 'ul[data-facet="modality"] li.active a').click()  # "× CT" clears it
    refs = [r.get_attribute("data-ref") for r in browser.find_elements(By.CSS_SELECTOR, "#results tr[data-ref]")]
    assert "public/retina-patch-ddpm@1.0.1" in refs and all(r.startswith("public/retina-") for r in refs)  # patches and the dual-GAN stages
    # the HTML test report, linked from a model page
    browser.get(f"{url_a}/model/public/phantom-lesion")
    browser.find_element(By.LINK_TEXT, "report").click()
    assert "Model test run" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-ref="public/phantom-lesion@1.0.0"]')
    browser.get(url_a + "/status")
    assert browser.find_element(By.ID, "health").text == "healthy"
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-failing]")
    _shot(browser, "serve-status.png")


def test_browser_shows_a_failing_model_as_failing(site_a: Settings, url_a: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    with Catalog.open(site_a.catalog_path, readonly=False) as cat, cat.transaction():
        e = cat.models.resolve("public/ihc-patch-dcgan-medigan")
        # what the nightly job records when a model's test fails (tests/test_nightly.py makes one fail)
        cat.tests.record_test(model_id=e.id, version=e.version, passed=False, upstream=e.upstream, sha256=e.record.sha256,
                              reason="determinism: two runs of seed 0 differ")
    browser.get(url_a + "/")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-ref="public/ihc-patch-dcgan-medigan@1.0.0"]')
    assert row.find_element(By.CSS_SELECTOR, "[data-test]").text == "FAILING"
    browser.get(f"{url_a}/model/public/ihc-patch-dcgan-medigan")
    assert "two runs of seed 0 differ" in browser.find_element(By.ID, "last-test").text
    browser.get(url_a + "/status")
    assert browser.find_element(By.ID, "health").text == "UNHEALTHY"
    failing = browser.find_elements(By.CSS_SELECTOR, "tr[data-failing]")
    assert [f.get_attribute("data-failing") for f in failing] == ["public/ihc-patch-dcgan-medigan@1.0.0"]
    # and the health check says so, as `synthmed status` does
    assert main(["--site", str(site_a.home), "status"]) != 0


def _follow(home: Path, name: str, upstream_url: str, store_url: str) -> Settings:
    assert main(["init", str(home), "--upstream", f"{name}={upstream_url}#main:index", "--name", home.name]) == 0
    toml = home / "site.toml"
    text = toml.read_text()
    assert "\n# mirrors = " in text
    toml.write_text(text.replace("\n# mirrors = ", f'\nmirrors = ["mirror:{store_url}"]  # was: '))
    return load_settings(home)


def _substitute(settings: Settings, sha: str) -> bytes:
    """Swap a blob's bytes for others of the same size (a hostile or rotten store); returns the original."""
    path = Store(settings.store_dir).blob_path(sha)
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return original


def _sha_of(settings: Settings, model: str) -> str:
    with Catalog.open(settings.catalog_path) as cat:
        sha = cat.models.resolve(f"{model}").record.sha256
    assert sha
    return sha


def test_three_site_chain_over_http_refuses_substituted_blobs(site_a: Settings, url_a: str,
                                                              tmp_path: Path) -> None:
    sha_ihc = _sha_of(site_a, "ihc-patch-dcgan")
    sha_phantom = _sha_of(site_a, "phantom-lesion")
    original = _substitute(site_a, sha_ihc)  # A serves wrong bytes for one blob
    try:
        b = _follow(tmp_path / "site-b", "a", f"{url_a}/git/public", f"{url_a}/store")
        assert main(["--site", str(b.home), "sync"]) == 0
        with serving(b) as url_b:
            _substitute(b, sha_phantom)  # and B for another
            c = _follow(tmp_path / "site-c", "b", f"{url_b}/git/a", f"{url_b}/store")
            assert main(["--site", str(c.home), "sync"]) == 0
    finally:
        Store(site_a.store_dir).blob_path(sha_ihc).write_bytes(original)
    with Catalog.open(c.catalog_path) as cat:
        ids = {e.id for e in cat.models.list_models()}
        arts = {a["sha256"]: a for a in cat.artefacts.rows()}
        commit = cat.federation.upstream_row("b")["accepted_commit"]  # type: ignore[index]
    with Catalog.open(site_a.catalog_path) as cat:
        assert commit == cat.federation.upstream_row("public")["accepted_commit"]  # type: ignore[index]
        want = {a["sha256"] for a in cat.artefacts.rows()}
    assert set(STARTERS) <= ids and len(ids) == N_MODELS
    # C holds every blob, each hashed by C itself, all verified
    store_c = Store(c.store_dir)
    assert set(store_c.iter_blobs()) == want and all(a["state"] == "verified" for a in arts.values())
    for sha in want:
        assert hashlib.sha256(store_c.blob_path(sha).read_bytes()).hexdigest() == sha
    # the blobs nobody tampered with came from B's store; the substituted one did not
    assert arts[sha_phantom]["source"].startswith("index:"), arts[sha_phantom]
    assert all(a["source"].startswith("mirror:http://127.0.0.1") for s, a in arts.items() if s != sha_phantom)
    notes = [json.loads(p.read_text()) for p in (c.store_dir / "quarantine").glob("*.json")]
    assert [n["expected_sha256"] for n in notes] == [sha_phantom] and "mirror:" in notes[0]["source"]
    # B refused A's substituted blob the same way
    notes_b = [json.loads(p.read_text()) for p in (b.store_dir / "quarantine").glob("*.json")]
    assert sha_ihc in [n["expected_sha256"] for n in notes_b]
