"""``synthmed serve`` over a real socket: pages, the store for downstream sites (GET/HEAD/Range
only, names checked, optional token) and the accepted index over git's smart HTTP protocol."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import git
import pytest

from synthmed.cli import main
from synthmed.registry.catalog import Catalog
from synthmed.registry.hashing import hash_file
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.artefacts.store import Store

from helpers import REPO_ROOT
from helpers.serving import serving, this_index


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("served")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    return load_settings(home)


@pytest.fixture(scope="module")
def url(site: Settings) -> Iterator[str]:
    with serving(site) as base:
        yield base


def request(base: str, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def a_blob(site: Settings) -> str:
    return sorted(Store(site.store_dir).iter_blobs())[0]


def test_search_facets_and_pages(url: str, site: Settings) -> None:
    status, headers, body = request(url, "GET", "/")
    html = body.decode()
    assert status == 200 and "text/html" in headers["content-type"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "public/phantom-lesion@1.0.0" in html and "public/00001_dcgan_mmg_calc_roi@" in html
    status, _, body = request(url, "GET", "/?modality=CT")
    rows = [line for line in body.decode().splitlines() if "data-ref=" in line]
    assert status == 200 and len(rows) == 1 and "phantom-lesion" in rows[0]
    _, _, body = request(url, "GET", "/?runnable=1")
    refs = {line.split('data-ref="')[1].split('"')[0] for line in body.decode().splitlines() if "data-ref=" in line}
    assert {r.split("/")[1].split("@")[0] for r in refs} == set(this_index()[0])
    assert "public/retina-patch-ddpm@1.0.1" in refs and not any("00001_dcgan_mmg_calc_roi" in r for r in refs)
    status, _, body = request(url, "GET", "/?q=%22AND%20NEAR(%20*&license=%3Cscript%3E")
    assert status == 200 and b"<script>" not in body and b"No model matches" in body
    with Catalog.open(site.catalog_path) as cat:
        sha = cat.models.resolve("retina-patch-ddpm").record.sha256
    status, _, body = request(url, "GET", "/model/public/retina-patch-ddpm")
    html = body.decode()
    assert status == 200 and sha is not None and sha in html and "Deprecated" not in html
    assert "patch-stats Fréchet distance" in html and "measured" in html  # metrics with how they were measured
    assert "synthmed generate public/retina-patch-ddpm@1.0.1" in html and "Not tested on this site yet" in html
    _, _, body = request(url, "GET", "/model/public/retina-patch-ddpm/1.0.0")
    assert b'id="banner">Deprecated' in body
    status, _, body = request(url, "GET", "/model/public/no-such-model")
    assert status == 404 and b"no-such-model" in body
    status, _, body = request(url, "GET", "/status")
    assert status == 200 and b'data-upstream="public"' in body


def test_store_serves_blobs_by_sha256_with_head_and_range(url: str, site: Settings,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import logging

    sha = a_blob(site)
    path = f"/store/blobs/sha256/{sha[:2]}/{sha[2:]}"
    data = Store(site.store_dir).blob_path(sha).read_bytes()
    with caplog.at_level(logging.INFO, logger="synthmed.serve.app"):
        status, headers, body = request(url, "GET", path)
    assert status == 200 and body == data and headers["content-type"] == "application/octet-stream"
    assert any(r.getMessage() == f"127.0.0.1 GET {path} 200" for r in caplog.records)  # the access log
    status, headers, body = request(url, "HEAD", path)
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(data)
    status, headers, body = request(url, "GET", path, {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and headers["content-range"] == f"bytes 10-19/{len(data)}"
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, _, _ = request(url, method, path, body=b"x")
        assert status == 405, method
    missing = "0" * 64
    for bad in (f"/store/blobs/sha256/00/{missing[2:]}", f"/store/blobs/sha256/{sha[:3]}/{sha[3:]}",
                f"/store/blobs/sha256/{sha[:2].upper()}/{sha[2:].upper()}", "/store/blobs/sha256/../../site.toml",
                "/store/blobs/sha256/%2e%2e/%2e%2e%2fsite.toml", "/store/state.db", "/store/quarantine/x",
                "/tests/1/files/../../site.toml", "/tests/999999/", "/tests/x/grid.png", "/reports/x.png",
                "/catalog.db", "/site.toml"):
        status, _, body = request(url, "GET", bad)
        assert status == 404, bad
        assert b"[sources]" not in body and b"SQLite" not in body


def test_a_link_in_the_store_is_not_followed(site: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret")
    fake = "ab" * 32
    link = Store(site.store_dir).blob_path(fake)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    try:
        with serving(site) as base:
            status, _, body = request(base, "GET", f"/store/blobs/sha256/{fake[:2]}/{fake[2:]}")
        assert status == 404 and b"secret" not in body
    finally:
        link.unlink()


def test_token_guards_the_store_and_the_indexes_only(site: Settings) -> None:
    token = "t0ken-" + "x" * 20
    sha = a_blob(site)
    path = f"/store/blobs/sha256/{sha[:2]}/{sha[2:]}"
    with serving(site, token=token) as base:
        assert request(base, "GET", path)[0] == 401
        assert request(base, "GET", "/git/public/info/refs?service=git-upload-pack")[0] == 401
        assert request(base, "GET", path, {"Authorization": "Bearer wrong"})[0] == 401
        basic = base64.b64encode(f"site-b:{token}".encode()).decode()
        assert request(base, "GET", path, {"Authorization": f"Basic {basic}"})[0] == 200
        assert request(base, "GET", path, {"Authorization": f"Bearer {token}"})[0] == 200
        assert request(base, "GET", path, {"Authorization": "Basic !!notbase64"})[0] == 401
        # issue #22: with a token every page needs it (tests/test_trust_serve.py: --public-catalogue)
        assert request(base, "GET", "/")[0] == 401
        assert request(base, "GET", "/", {"Authorization": f"Bearer {token}"})[0] == 200


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_git_serves_only_the_accepted_commit(url: str, site: Settings, tmp_path: Path) -> None:
    mirror = git.Repo(site.upstreams_dir / "public")
    accepted = mirror.git.rev_parse("refs/synthmed/accepted")
    # something fetched but not accepted: a commit the site refused must not be served
    tree = mirror.git.rev_parse(f"{accepted}^{{tree}}")
    unaccepted = mirror.git.commit_tree(tree, "-p", accepted, "-m", "not accepted")
    mirror.git.update_ref("refs/synthmed/fetched", unaccepted)
    out = _git("ls-remote", f"{url}/git/public")
    assert out.returncode == 0, out.stderr
    refs = dict(reversed(line.split("\t")) for line in out.stdout.splitlines())
    assert refs == {"HEAD": accepted, "refs/heads/main": accepted}
    clone = tmp_path / "clone"
    assert _git("clone", "-q", "--bare", f"{url}/git/public", str(clone)).returncode == 0
    assert _git("--git-dir", str(clone), "rev-parse", "refs/heads/main").stdout.strip() == accepted
    bad = _git("--git-dir", str(clone), "fetch", f"{url}/git/public", unaccepted)
    assert bad.returncode != 0 and _git("--git-dir", str(clone), "cat-file", "-e", unaccepted).returncode != 0
    # no dumb protocol, no push, nothing but upload-pack, no other upstream names
    assert request(url, "GET", "/git/public/info/refs")[0] == 403
    assert request(url, "GET", "/git/public/info/refs?service=git-receive-pack")[0] == 403
    assert request(url, "POST", "/git/public/git-receive-pack", body=b"0000")[0] == 403
    assert request(url, "GET", "/git/public/git-upload-pack")[0] == 405
    assert request(url, "GET", "/git/public/HEAD")[0] == 403
    assert request(url, "GET", "/git/public/objects/info/packs")[0] == 403
    assert request(url, "GET", "/git/public/refs/synthmed/fetched")[0] == 403
    assert request(url, "GET", "/git/other/info/refs?service=git-upload-pack")[0] == 404
    assert request(url, "GET", "/git/..%2f..%2fpublic/info/refs?service=git-upload-pack")[0] == 404
    push = _git("--git-dir", str(clone), "push", f"{url}/git/public", "refs/heads/main:refs/heads/x")
    assert push.returncode != 0


def test_serve_cli_refuses_a_short_token_and_a_missing_site(tmp_path: Path, site: Settings,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tok").write_text("short\n")
    assert main(["--site", str(site.home), "serve", "--token-file", str(tmp_path / "tok")]) == 1
    assert "shorter than 16" in capsys.readouterr().err
    assert main(["--site", str(tmp_path / "nothing"), "serve"]) == 1
    assert "no site at" in capsys.readouterr().err
    assert main(["--site", str(site.home), "serve", "--token-file", str(tmp_path / "missing")]) == 1
    assert "cannot read it" in capsys.readouterr().err


def test_health_is_json_and_503_when_an_upstream_is_stale(site: Settings) -> None:
    with serving(site) as base:
        status, _, body = request(base, "GET", "/health")
    assert status == 200 and json.loads(body)["ok"] is True
    with serving(site.with_overrides(stale_after_hours=1e-9)) as base:
        status, _, body = request(base, "GET", "/health")
    doc = json.loads(body)
    assert status == 503 and doc["ok"] is False and any("stale" in p for p in doc["problems"])


def test_test_reports_are_found_through_the_catalog_and_stay_inside_their_run(site: Settings, url: str,
                                                                              tmp_path: Path) -> None:
    """`synthmed test --report DIR` writes reports anywhere (the main job: out/reports); the
    catalog's row says where; only PNG and JSON files inside that run's folder are served."""
    from PIL import Image

    run = tmp_path / "out" / "reports"
    (run / "models" / "phantom-lesion").mkdir(parents=True)
    (run / "samples").mkdir()
    Image.new("L", (8, 8), 128).save(run / "samples" / "phantom-lesion@1.0.0.png")
    (tmp_path / "out" / "secret.png").write_bytes(b"secret")
    doc = {"format": "synthmed-test-report/1", "created": "2026-11-29T00:00:00+00:00", "synthmed_version": "0",
           "site": "x", "environment": {"python": "3", "platform": "linux", "torch": None},
           "summary": {"total": 1, "passed": 1, "failed": 0, "skipped": 0},
           "results": [{"ref": "phantom-lesion@1.0.0", "upstream": "public", "status": "passed", "reason": None,
                        "title": "<b>t</b>", "checks": [], "measurements": {"throughput_sps": 1.0,
                                                                            "peak_memory_mb": 2.0},
                        "samples_png": "samples/phantom-lesion@1.0.0.png"}]}
    (run / "report.json").write_text(json.dumps(doc))
    one = json.loads(json.dumps(doc))
    one["results"][0]["samples_png"] = "../../samples/phantom-lesion@1.0.0.png"
    (run / "models" / "phantom-lesion" / "1.0.0.json").write_text(json.dumps(one))
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        e = cat.models.resolve("phantom-lesion")
        good = cat.tests.record_test(model_id=e.id, version=e.version, passed=True, upstream=e.upstream,
                                     sha256=e.record.sha256, report_path=str(run / "models" / "phantom-lesion" / "1.0.0.json"))
    status, headers, body = request(url, "GET", f"/tests/{good}/grid.png")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    status, _, body = request(url, "GET", f"/tests/{good}/")
    assert status == 200 and b"phantom-lesion@1.0.0" in body and b"<b>t</b>" not in body  # escaped
    # its title names the run, not the folder ("Model test report reports", "on site site")
    assert f"<title>Model test run {good}".encode() in body and f"<h1>Model test run {good}</h1>".encode() in body
    assert b"on the site <code>x</code>" in body and b"reports</h1>" not in body
    # the front page shows the model's last grid as a thumbnail in its row
    _, _, home = request(url, "GET", "/")
    row = next(line for line in home.decode().split("<tr ") if 'data-ref="public/phantom-lesion@1.0.0"' in line)
    assert f'src="/tests/{good}/grid.png"' in row
    assert f'src="/tests/{good}/files/samples/phantom-lesion@1.0.0.png"'.encode() in body
    assert request(url, "GET", f"/tests/{good}/files/samples/phantom-lesion@1.0.0.png")[0] == 200
    _, _, page = request(url, "GET", "/model/public/phantom-lesion")
    assert f'src="/tests/{good}/grid.png"'.encode() in page and f'href="/tests/{good}/"'.encode() in page
    for bad in ("../secret.png", "..%2fsecret.png", "models/../../secret.png", "summary.md", "report.json/.."):
        status, _, body = request(url, "GET", f"/tests/{good}/files/{bad}")
        assert status == 404 and body != b"secret", bad
    # a report whose grid points out of its run folder: no grid
    one["results"][0]["samples_png"] = "../../../secret.png"
    (run / "models" / "phantom-lesion" / "1.0.0.json").write_text(json.dumps(one))
    status, _, body = request(url, "GET", f"/tests/{good}/grid.png")
    assert status == 404 and body != b"secret"


def test_front_page_lists_what_this_site_can_run_first_and_unverified_apart(url: str, site: Settings) -> None:
    """The first rows are models this site can run (pinned); the unverified medigan imports
    sit in their own collapsed section; an unverified model's page says how to pin it and
    shows no generate snippet; a pinned one without a grid makes no promise it cannot keep
    (issue #26)."""
    _, _, body = request(url, "GET", "/")
    html = body.decode()
    main, _, rest = html.partition('<details id="unverified">')
    assert rest, "no unverified section"
    first = [line.split('data-ref="')[1].split('"')[0] for line in main.splitlines() if "data-ref=" in line]
    later = [line.split('data-ref="')[1].split('"')[0] for line in rest.splitlines() if "data-ref=" in line]
    with Catalog.open(site.catalog_path) as cat:
        pinned = {e.qualified_ref for e in cat.models.search("", limit=500) if e.record.sha256}
    assert first and set(first) == pinned and not set(later) & pinned
    assert any("00001_dcgan_mmg_calc_roi" in r for r in later)
    assert "<details id=\"unverified\" open" not in html  # collapsed
    unverified = later[0].split("/")[1].split("@")[0]
    _, _, page = request(url, "GET", f"/model/public/{unverified}")
    text = page.decode()
    assert "Not runnable here until its package is pinned" in text and "synthmed index pin" in text
    assert "synthmed generate" not in text and "model.sample(" not in text and "No sample grid yet" not in text
    _, _, page = request(url, "GET", "/model/public/retina-patch-dcgan")
    text = page.decode()
    assert "synthmed generate public/retina-patch-dcgan@" in text and "once the package is mirrored" not in text
    assert "synthmed test public/retina-patch-dcgan@" in text  # how to draw the grid


def test_hostile_record_text_is_escaped_and_yanked_versions_say_so(tmp_path: Path) -> None:
    """A record's text is an upstream's input: escaped, and only http(s) URLs become links."""
    from helpers.records import make_record
    from helpers.sites import make_site_home, write_site

    evil = make_record(**{"id": "evil-gan", "version": "1.0.0", "title": "<script>alert(1)</script>",
                          "summary": '"><img src=x onerror=alert(1)>',
                          "publications": [{"title": "p", "url": "javascript:alert(1)"},
                                           {"title": "q", "url": "https://example.org/paper"}]})
    old = make_record(**{"id": "evil-gan", "version": "0.9.0", "status": "yanked",
                         "status_reason": "trained on the wrong split"})
    home = tmp_path / "site"
    write_site(home, [{"name": "public", "url": str(tmp_path / "no-index")}])
    make_site_home(home, [evil, old])
    with serving(load_settings(home)) as base:
        _, _, body = request(base, "GET", "/model/public/evil-gan")
        html = body.decode()
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
        assert "<img src=x" not in html
        assert 'href="javascript:' not in html and 'href="https://example.org/paper"' in html
        _, _, body = request(base, "GET", "/model/public/evil-gan/0.9.0")
        assert b'id="banner">YANKED' in body and b"trained on the wrong split" in body
        _, _, body = request(base, "GET", "/?q=evil")
        refs = [line for line in body.decode().splitlines() if "data-ref=" in line]
        assert len(refs) == 1 and "evil-gan@1.0.0" in refs[0]  # the yanked version is never listed


def test_a_site_without_a_catalog_says_what_to_do(tmp_path: Path) -> None:
    from helpers.sites import write_site

    settings = write_site(tmp_path / "site", [{"name": "public", "url": str(tmp_path / "index")}])
    with serving(settings) as base:
        status, _, body = request(base, "GET", "/")
        assert status == 503 and b"synthmed sync" in body
        status, _, body = request(base, "GET", "/status")
        assert status == 200 and b"never synced" in body
        status, _, body = request(base, "GET", "/health")
        assert status == 503 and json.loads(body)["problems"] == ["upstream public: never synced successfully"]
        assert request(base, "GET", "/git/public/info/refs?service=git-upload-pack")[0] == 404


def test_measured_metrics_are_shown_with_their_provenance(site: Settings, url: str) -> None:
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        e = cat.models.resolve("ihc-patch-dcgan")
        assert e.record.sha256
        cat.evaluations.record_evaluation(run="r1", upstream=e.upstream, model_id=e.id, version=e.version, sha256=e.record.sha256,
                                          values={"fd": (12.5, "lower")}, key="k" * 40, reference="ihc-heldout",
                                          extractor="randconv-224", params={"n": 64},
                                          provenance={"n_generated": 64, "n_real": 500, "seed": 0})
    _, _, body = request(url, "GET", "/model/public/ihc-patch-dcgan")
    html = body.decode()
    assert 'id="measured"' in html and "ihc-heldout" in html and "randconv-224" in html
    assert "n_real: 500" in html and "n=64" in html and "12.5" in html
