"""Finding models (issue 17, item 6): "did you mean", ids in search, `show`'s summary and a
yanked version, `search --runnable`; and the SDK's progress bars (item 5)."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from helpers.packages import marker_package
from helpers.sites import make_site_home, run_cli
from synthmed.cli import main
from synthmed.registry.catalog import GENERATION, Catalog
from synthmed.registry.catalog.models import id_terms


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def records(tmp_path: Path, toy_gan: Any) -> list[dict[str, Any]]:
    toy, _, _ = toy_gan
    marker, _, _ = marker_package(tmp_path / "m")
    old = dict(toy.data, version="0.9.0", status="yanked", status_reason="produced all-black images")
    unpinned = json.loads(json.dumps(dict(toy.data, id="toy-gan-unpinned", title="Unpinned toy")))
    del unpinned["package"]["artefact"]["sha256"]
    unpinned["package"]["artefact"].pop("size", None)
    return [dict(toy.data), old, dict(marker.data), unpinned]


@pytest.fixture
def home(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    return make_site_home(tmp_path / "site", records)


# --- did you mean -----------------------------------------------------------------------


def test_unknown_ref_suggests_close_ids(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "--site", str(home), "show", "toy-gn")
    assert rc != 0
    assert "no model 'toy-gn'" in err and "did you mean 'toy-gan'" in err
    rc, _, err = _cli(capsys, "--site", str(home), "generate", "tyo-gan", "-n", "1", "-o", str(home / "o"))
    assert rc != 0 and "did you mean 'toy-gan'" in err
    from synthmed import Site
    from synthmed.registry.errors import ModelNotFound

    with pytest.raises(ModelNotFound) as info:
        Site(home).resolve("public/toygan")
    assert "toy-gan" in info.value.suggestions  # type: ignore[attr-defined]
    rc, _, err = _cli(capsys, "--site", str(home), "show", "zzzzzzzz")
    assert rc != 0 and "did you mean" not in err  # nothing close: no guess


# --- ids in search ----------------------------------------------------------------------


def test_search_matches_ids_and_their_parts(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert id_terms("ihc-patch_dcgan") == "ihc-patch_dcgan ihc patch dcgan ihcpatchdcgan"
    for query in ("toy-gan", "toygan", "gan"):
        rc, out, err = _cli(capsys, "--site", str(home), "search", query, "--json")
        assert rc == 0, err
        refs = [e["ref"] for e in json.loads(out)]
        assert "public/toy-gan@1.0.0" in refs, (query, refs)
    rc, out, _ = _cli(capsys, "--site", str(home), "search", "unpinned", "--json")
    assert [e["id"] for e in json.loads(out)] == ["toy-gan-unpinned"]


def _rewind_to_generation_3(path: Path) -> None:
    """The generation-3 layout: no ident column, FTS over the eight text columns."""
    conn = sqlite3.connect(path)
    cols = "title, summary, description, modality, anatomy, generates, tags, architecture"
    for trig in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]:
        conn.execute(f"DROP TRIGGER {trig}")
    conn.execute("DROP TABLE models_fts")
    conn.execute("ALTER TABLE models DROP COLUMN ident")
    conn.execute(f"CREATE VIRTUAL TABLE models_fts USING fts5({cols}, content='models', content_rowid='pk', "
                 "tokenize='unicode61 remove_diacritics 2')")
    conn.execute(f"INSERT INTO models_fts (rowid, {cols}) SELECT pk, {cols} FROM models WHERE is_latest = 1")
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()


def test_generation_3_catalog_migrates_to_the_rebuilt_layout(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    fresh = make_site_home(tmp_path / "fresh", records)
    old = make_site_home(tmp_path / "old", records)
    _rewind_to_generation_3(old / "catalog.db")
    with pytest.raises(Exception, match="generation 3"):
        Catalog.open(old / "catalog.db")  # a reader never migrates
    with Catalog.open(old / "catalog.db", readonly=False) as cat:
        assert cat.generation() == GENERATION == 10
        assert [e.id for e in cat.models.search("toyganunpinned")] == ["toy-gan-unpinned"]
        migrated = cat.snapshot()
    with Catalog.open(fresh / "catalog.db") as cat:
        assert cat.snapshot() == migrated  # the same as a catalog made (or rebuilt) at generation 4


# --- show ---------------------------------------------------------------------------------


def test_show_opens_with_a_summary_and_json_has_everything(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Catalog.open(home / "catalog.db", readonly=False) as cat:
        sha = cat.models.resolve("toy-gan").record.sha256
        with cat.transaction():
            cat.tests.record_test(model_id="toy-gan", version="1.0.0", passed=True, upstream="public", sha256=sha,
                                  finished="2026-11-20T10:00:00Z")
            cat.tests.record_test(model_id="toy-gan", version="1.0.0", passed=False, upstream="other", sha256="f" * 64,
                                  finished="2026-11-21T10:00:00Z", reason="another upstream's package")
    rc, out, err = _cli(capsys, "--site", str(home), "show", "toy-gan")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "Test model toy-gan"
    assert "ref:          public/toy-gan@1.0.0" in out
    assert "status:       active" in out
    assert "last test:    passed at 2026-11-20T10:00:00Z" in out  # this upstream's package only
    assert "another upstream" not in out
    params = out[out.index("parameters:"):out.index("outputs:")]
    assert "NAME" in params and "label" in params and '"benign", "malignant"' in params
    outputs = out[out.index("outputs:"):]
    assert "image" in outputs and "8x8" in outputs and "uint8" in outputs
    assert "YANKED" not in out
    assert '"package"' not in out  # the record itself only under --json
    rc, out, _ = _cli(capsys, "--site", str(home), "show", "toy-gan", "--json")
    data = json.loads(out)
    assert data["record"]["id"] == "toy-gan" and data["record"]["package"]["artefact"]["sha256"] == sha
    assert data["artefact_state"] == "missing" and data["tests"][0]["passed"] == 1
    assert {v["version"] for v in data["versions"]} == {"1.0.0", "0.9.0"}


def test_show_a_yanked_version_but_never_run_it(home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _cli(capsys, "--site", str(home), "show", "toy-gan@0.9.0")
    assert rc == 0, err
    assert out.startswith("*** YANKED: public/toy-gan@0.9.0")
    assert "produced all-black images" in out.splitlines()[0]
    assert "use another version: 1.0.0" in out
    assert "status:       yanked (produced all-black images)" in out
    rc, out, _ = _cli(capsys, "--site", str(home), "show", "toy-gan@0.9.0", "--json")
    assert json.loads(out)["yanked"] is True and json.loads(out)["status"] == "yanked"
    rc, _, err = _cli(capsys, "--site", str(home), "generate", "toy-gan@0.9.0", "-n", "1", "-o", str(tmp_path / "o"))
    assert rc != 0 and "yanked" in err
    assert not (tmp_path / "o").exists()


# --- runnable -------------------------------------------------------------------------------


def test_search_runnable_lists_only_what_the_site_can_run_now(home: Path, records: list[dict[str, Any]],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from synthmed import Site

    def runnable(*extra: str) -> list[str]:
        rc, out, err = _cli(capsys, "--site", str(home), "search", "--runnable", "--json", *extra)
        assert rc == 0, err
        return [e["id"] for e in json.loads(out)]

    rc, out, _ = _cli(capsys, "--site", str(home), "search", "--json")
    assert {e["id"] for e in json.loads(out)} >= {"toy-gan", "toy-gan-unpinned"}
    assert runnable() == []  # nothing is in the store yet
    Site(home, progress=False).package("toy-gan")  # fetched: now in the store
    assert runnable() == ["toy-gan"]
    assert runnable("toy") == ["toy-gan"]  # the unpinned one never runs
    assert [e.id for e in Site(home).search(runnable=True)] == ["toy-gan"]
    # an upstream whose code the site does not run
    text = (home / "site.toml").read_text()
    (home / "site.toml").write_text(text.replace("[[upstreams]]", "[[upstreams]]\nallow_code = false"))
    assert runnable() == []
    assert Site(home).search(runnable=True) == []


def test_search_runnable_through_the_entry_point(home: Path) -> None:
    res = run_cli(["--site", str(home), "search", "--runnable"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(none)"


# --- progress bars (item 5) ------------------------------------------------------------------


def test_progress_bar_draws_only_on_a_terminal() -> None:
    from synthmed.progress import ProgressBar, progress_bar

    tty = FakeTTY()
    bar = ProgressBar("m", stream=tty)
    bar(5, 5)
    assert "[##############################] 5/5 100.0%" in tty.getvalue() and tty.getvalue().startswith("\r")
    plain = io.StringIO()
    ProgressBar("m", stream=plain)(5, 5)
    assert plain.getvalue() == ""  # not a terminal: nothing
    ProgressBar("m", stream=plain, enabled=True)(5, 5)
    assert "5/5" in plain.getvalue() and "\r" not in plain.getvalue()  # forced: plain lines
    off = FakeTTY()
    ProgressBar("m", stream=off, enabled=False)(5, 5)
    assert off.getvalue() == ""
    assert progress_bar(False, "m", stream=FakeTTY()) is None
    assert progress_bar(None, "m", stream=io.StringIO()) is None
    size = FakeTTY()
    b = ProgressBar("f", stream=size, unit="bytes")
    b(2048, None)
    b.close()
    assert "2.0 KB" in size.getvalue() and size.getvalue().endswith("\n")


def test_sdk_calls_show_progress_on_a_terminal_only(home: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed import Generators

    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    gen = Generators(home, mode="inline", device="cpu")
    gen.generate("toy-gan", num_samples=6, output_path=tmp_path / "a", format="npy", batch_size=4)
    text = tty.getvalue()
    assert "fetching public/toy-gan@1.0.0" in text and "KB" in text  # the package download
    assert "public/toy-gan@1.0.0 [" in text and "6/6 100.0%" in text
    gen.visualize("toy-gan", num_samples=4, output_path=tmp_path / "g.png")
    assert "grid" in tty.getvalue() and "4/4" in tty.getvalue()
    # progress=False: nothing, even on a terminal
    quiet = FakeTTY()
    monkeypatch.setattr("sys.stderr", quiet)
    gen.generate("toy-gan", num_samples=6, output_path=tmp_path / "b", format="npy", progress=False)
    gen.visualize("toy-gan", num_samples=4, output_path=tmp_path / "g2.png", progress=False)
    assert quiet.getvalue() == ""
    gen.close()
    # not a terminal: nothing, by default
    plain = io.StringIO()
    monkeypatch.setattr("sys.stderr", plain)
    other = Generators(make_site_home(tmp_path / "s2", _toy_only(home)), mode="inline", device="cpu")
    other.generate("toy-gan", num_samples=3, output_path=tmp_path / "c", format="npy")
    assert plain.getvalue() == ""
    # off for the whole Generators
    tty2 = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty2)
    off = Generators(home, mode="inline", device="cpu", progress=False)
    off.generate("toy-gan", num_samples=3, output_path=tmp_path / "d", format="npy")
    assert tty2.getvalue() == ""


def _toy_only(home: Path) -> list[dict[str, Any]]:
    with Catalog.open(home / "catalog.db") as cat:
        return [dict(cat.models.resolve("toy-gan").record.data)]


def test_fetch_progress_is_threaded_through_prepare(home: Path) -> None:
    from synthmed import Site
    from synthmed.registry.packages import prepare

    site = Site(home)
    seen: list[tuple[int, int | None]] = []
    prepare(site.resolve("toy-gan"), site.settings, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == site.resolve("toy-gan").record.size
    seen.clear()
    prepare(site.resolve("toy-gan"), site.settings, progress=lambda d, t: seen.append((d, t)))
    assert seen == []  # already there: nothing fetched, no progress
