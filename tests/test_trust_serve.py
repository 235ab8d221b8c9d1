"""Threat model: what ``synthmed serve`` promises to an anonymous reader, to a token holder and
to a downstream site, and that a token never leaves the site admin's ``site.toml`` (issue #22,
the serving and credential items; docs/threat-model.md names each test).

- an anonymous reader: with a token file nothing but (with ``--public-catalogue``) the
  catalogue pages; no page shows a credential or an absolute path of the machine; only the
  files a test run wrote are served; a request is refused from its headers when it announces
  more than 16 MiB; one client cannot hold every connection; a NUL in a search is bad input.
- a token holder: everything, the same pages.
- a downstream site: its token is used to fetch, never printed, logged or stored.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from synthmed.cli import main
from synthmed.daemon.status import site_status
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import Settings, load_settings

from helpers import REPO_ROOT
from helpers.serving import serving

TOKEN = "s3cret-t0ken-" + "q" * 20


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("served")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    return load_settings(home)


def request(base: str, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


@pytest.fixture()
def served(site: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``synthmed serve`` in its own process (port 0), with its stderr; yields it and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "synthmed.cli", "--site", str(site.home), "serve", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=str(tmp_path))
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving" in line and "http://" in line, line
        url = line.split("http://", 1)[1].split("/", 1)[0]
        yield proc, f"http://{url}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


# -- 1, 2: a token is used, never shown or stored -------------------------------------------------


def _files_holding(root: Path, secret: bytes, skip: tuple[str, ...] = ("site.toml",)) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name not in skip and secret in p.read_bytes()]


def test_a_downstream_token_is_used_but_never_printed_logged_or_stored(
        site: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Items 1 and 2: site B follows A with ``http://NAME:TOKEN@host/...`` (docs/sites.md's
    form), for the index and as its mirror. B syncs (so the token works), but neither its
    output, its catalogue, its state files, ``status --json`` nor its own served status page
    holds the token."""
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    with serving(site, token=TOKEN) as url_a:
        auth = url_a.replace("http://", f"http://site-b:{TOKEN}@")
        home = tmp_path / "site-b"
        assert main(["init", str(home), "--upstream", f"a={auth}/git/public#main:index", "--name", "site-b"]) == 0
        toml = home / "site.toml"
        toml.write_text(toml.read_text().replace("\n# mirrors = ", f'\nmirrors = ["mirror:{auth}/store"]  # was: '))
        capsys.readouterr()
        assert main(["-v", "--site", str(home), "sync"]) == 0
        assert main(["--site", str(home), "status", "--json"]) in (0, 3)
    out = capsys.readouterr()
    b = load_settings(home)
    with Catalog.open(b.catalog_path) as cat:
        sources = [a["source"] for a in cat.artefacts.rows() if a["source"]]
        ups = cat.federation.upstream_rows()
    assert sources and any(s.startswith("mirror:http://site-b:***@") for s in sources), sources  # the token worked
    assert "fetching main from http://site-b:***@" in out.out + out.err
    assert TOKEN not in out.out and TOKEN not in out.err
    assert all(TOKEN not in str(u["url"]) for u in ups)
    assert _files_holding(home, TOKEN.encode(), skip=("site.toml", "FETCH_HEAD")) == []
    st = json.dumps(site_status(b, None))
    assert TOKEN not in st
    with serving(b) as url_b:
        status, _, body = request(url_b, "GET", "/status")
    assert status == 200 and TOKEN.encode() not in body and b"site-b:***@" in body
    # an export carries the upstream URL for people to read, never its password
    assert main(["--site", str(home), "export", str(tmp_path / "bundle")]) == 0
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [u["url"] for u in manifest["upstreams"]] == [f"http://site-b:***@{url_a[len('http://'):]}/git/public"]
    assert _files_holding(tmp_path / "bundle", TOKEN.encode(), skip=()) == []


def test_a_token_stored_by_an_older_sync_is_shown_redacted(site: Settings, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Item 1 (and 2 for old catalogues): a catalogue written before the fix holds
    ``mirror:http://NAME:TOKEN@...`` as a blob's source; the status page and ``status --json``
    show it redacted."""
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        sha = next(a["sha256"] for a in cat.artefacts.rows())
        cat.artefacts.set_artefact(sha, state="verified", source=f"mirror:http://site-b:{TOKEN}@10.0.0.1:8070/store")
    try:
        with serving(site) as url:
            status, _, body = request(url, "GET", "/status")
        assert status == 200 and TOKEN.encode() not in body and b"mirror:http://site-b:***@10.0.0.1" in body
        capsys.readouterr()
        main(["--site", str(site.home), "status", "--json"])
        out = capsys.readouterr().out
        assert TOKEN not in out and "site-b:***@" in out
    finally:
        with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
            cat.artefacts.set_artefact(sha, state="verified", source="store")


def test_with_a_token_every_page_needs_it_unless_the_catalogue_is_made_public(site: Settings) -> None:
    """Item 1: ``--token-file`` guards every page; ``--public-catalogue`` opens the catalogue
    pages only (never /status, /health, /store, /git)."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with serving(site, token=TOKEN) as url:
        for path in ("/", "/model/public/phantom-lesion", "/status", "/health", "/tests/1/"):
            assert request(url, "GET", path)[0] == 401, path
        assert request(url, "GET", "/", bearer)[0] == 200
        assert request(url, "GET", "/status", bearer)[0] == 200
    with serving(site, token=TOKEN, public_catalogue=True) as url:
        assert request(url, "GET", "/")[0] == 200
        assert request(url, "GET", "/model/public/phantom-lesion")[0] == 200
        for path in ("/status", "/health", "/git/public/info/refs?service=git-upload-pack"):
            assert request(url, "GET", path)[0] == 401, path


# -- 3: only what the run wrote ----------------------------------------------------------------------


def test_report_files_are_only_those_the_test_run_wrote(site: Settings, tmp_path: Path) -> None:
    """Item 3: ``--report DIR`` may name a folder holding other files (a credentials JSON); only
    the files the run wrote (as its report.json records them) are served."""

    run = tmp_path / "reports"
    run.mkdir()
    (run / "credentials.json").write_text('{"secret": "x"}')
    (run / "samples").mkdir()
    (run / "samples" / "old.png").write_bytes(b"\x89PNG old")
    assert main(["--site", str(site.home), "test", "phantom-lesion", "--report", str(run)]) == 0
    with Catalog.open(site.catalog_path) as cat:
        test_id = max(t["id"] for t in cat.tests.tests_of("public", "phantom-lesion", "1.0.0",
                                                     cat.models.resolve("phantom-lesion").record.sha256, limit=5))
    doc = json.loads((run / "report.json").read_text())
    with serving(site) as url:
        assert request(url, "GET", f"/tests/{test_id}/files/report.json")[0] == 200
        assert request(url, "GET", f"/tests/{test_id}/files/models/phantom-lesion/1.0.0.json")[0] == 200
        if doc["results"][0].get("samples_png"):
            assert request(url, "GET", f"/tests/{test_id}/files/{doc['results'][0]['samples_png']}")[0] == 200
        for pre in ("credentials.json", "samples/old.png"):
            status, _, body = request(url, "GET", f"/tests/{test_id}/files/{pre}")
            assert status == 404 and b"secret" not in body and b"old" not in body, pre


# -- 4, 9, SIGTERM: the server ------------------------------------------------------------------------


def _raw(url: str, data: bytes, source: str = "127.0.0.1") -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20, source_address=(source, 0)) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_a_request_announcing_more_than_16_mib_is_refused_from_its_headers(
        served: tuple[subprocess.Popen[str], str]) -> None:
    """Item 4: 413 as soon as the headers say so, without the body (which never comes), before
    the token check, and nothing spooled."""
    _, url = served
    head = (b"POST /git/public/git-upload-pack HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-git-upload-pack-request\r\nContent-Length: %d\r\n\r\n" % (17 << 20))
    answer = _raw(url, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_one_client_cannot_starve_the_others(served: tuple[subprocess.Popen[str], str]) -> None:
    """Item 9: 110 idle connections from one address; another address is still served."""
    _, url = served
    parts = urlsplit(url)
    held = []
    try:
        for _ in range(110):
            held.append(socket.create_connection((parts.hostname, parts.port), timeout=20))
        answer = _raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source="127.0.0.2")
        assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")) and b"too many connections" not in answer
    finally:
        for s in held:
            s.close()


def test_sigterm_finishes_the_request_in_flight_then_exits_0(served: tuple[subprocess.Popen[str], str]) -> None:
    """SIGTERM: the request being received is answered, then the server exits 0 and says so."""
    proc, url = served
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half a request: in flight
        _raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # the server has read it
        proc.send_signal(signal.SIGTERM)
        s.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")) and answer.rstrip().endswith(b"}")
    assert proc.wait(timeout=120) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "SIGTERM" in err and "stopped" in err, err


# -- 10, 14, 16: pages ----------------------------------------------------------------------------------


def test_public_pages_show_no_absolute_paths(site: Settings) -> None:
    """Item 10: the ``Site(...)`` snippet does not name the site's folder, and a failing model's
    traceback keeps file names only."""
    tb = (f'Traceback (most recent call last):\n  File "{site.home}/packages/abc/model.py", line 3, in make\n'
          'RuntimeError: boom')
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        e = cat.models.resolve("phantom-lesion")
        cat.tests.record_test(model_id=e.id, version=e.version, passed=False, upstream=e.upstream,
                        sha256=e.record.sha256, reason=tb)
    with serving(site) as url:
        for path in ("/model/public/phantom-lesion", "/status"):
            status, _, body = request(url, "GET", path)
            html = body.decode()
            assert status == 200 and str(site.home) not in html and "/packages/abc" not in html, path
        assert "model.py" in request(url, "GET", "/model/public/phantom-lesion")[2].decode()


def test_a_nul_in_a_search_query_is_bad_input_not_a_bug(site: Settings) -> None:
    """Item 14: ``Site.search`` and the web search box take a NUL as a space."""
    from synthmed import Site

    found = Site(site.home).search("phantom\x00lesion")
    assert any(m.id == "phantom-lesion" for m in found)
    with serving(site) as url:
        status, _, body = request(url, "GET", "/?q=phantom%00")
    assert status == 200 and b"phantom-lesion" in body


def test_a_double_slash_url_gets_a_location(site: Settings) -> None:
    """Item 16 (first half): never a 308 without a Location; the Location stays on this host."""
    with serving(site) as url:
        for path, where in (("//status", "/status"), ("/model//public//phantom-lesion", "/model/public/phantom-lesion"),
                            ("//evil.example/x?q=1", "/evil.example/x?q=1")):
            status, headers, _ = request(url, "GET", path)
            redirected = status in (301, 302, 307, 308)
            assert (not redirected and status in (200, 404)) or headers.get("location") == where, (path, status, headers)


# -- 15: the clock ---------------------------------------------------------------------------------------


def test_a_last_success_in_the_future_is_a_problem(site: Settings) -> None:
    """Item 15: a clock set wrong (or a forged state) never makes an upstream look fresh."""
    with Catalog.open(site.catalog_path) as cat:
        st = site_status(site, cat, now=datetime(2001, 1, 1, tzinfo=timezone.utc))
    up = st["upstreams"][0]
    assert up["stale"] is True and st["health"]["ok"] is False
    assert any("in the future" in p for p in st["health"]["problems"])
    assert any("in the future" in w for w in st["warnings"])
