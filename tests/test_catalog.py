"""The SQLite catalog: FTS5 search with hostile queries, filters, ranking, read-only readers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from synthmed.registry.measuring import ranking
from synthmed.registry.catalog import GENERATION, Catalog, fts_query, version_key
from synthmed.registry.errors import CatalogError
from synthmed.registry.records import Record


def _rec(make_record: Any, model_id: str, version: str = "1.0.0", **kw: Any) -> Record:
    data = make_record(**kw)
    data["id"], data["version"] = model_id, version
    return Record(data=data)


@pytest.fixture
def cat(tmp_path: Path, make_record: Any) -> Catalog:
    c = Catalog.open(tmp_path / "catalog.db", readonly=False)
    with c.transaction():
        c.federation.put_upstream("public", priority=10, ord=0, accepted_commit="a" * 40)
        recs = [
            _rec(make_record, "mass-gan", title="Mass-like lesion generator", modality=["MMG"], anatomy=["breast"],
                 **{"metrics": [{"name": "FID", "value": 30.0, "better": "lower", "source": "reported"},
                                {"name": "precision", "value": 0.5, "better": "higher", "source": "reported"}]}),
            _rec(make_record, "lung-ddpm", title="Lung nodule diffusion", modality=["CT"], anatomy=["lung"],
                 license="Apache-2.0", **{"architecture": {"family": "diffusion", "name": "DDPM"},
                                          "metrics": [{"name": "FID", "value": 10.0, "better": "lower",
                                                       "source": "reported"},
                                                      {"name": "precision", "value": 0.9, "better": "higher",
                                                       "source": "reported"}]}),
            _rec(make_record, "brain-vae", title="Brain MRI VAE \"AND\" more", modality=["MRI"], anatomy=["brain"],
                 **{"metrics": [{"name": "FID", "value": 50.0, "better": "lower", "source": "reported"},
                                {"name": "FID", "value": 5.0, "better": "lower", "source": "measured"}]}),
            _rec(make_record, "no-metric", title="Something without metrics", modality=["US"], anatomy=["liver"],
                 **{"metrics": []}),
        ]
        for r in recs:
            c.models.upsert_record("public", f"models/{r.id}/{r.version}.json", r, "a" * 40)
        c.models.refresh_latest("public", [r.id for r in recs])
    return c


HOSTILE = ['mass-like', '"AND', '*', '"', "'", 'AND', 'OR NOT', 'NEAR(', 'a:b', 'title:mass', '-lung', '^x',
           '(((', ')', '"mass', 'mass"', '""', 'lung*', '***', '.', 'col:', '{title}: x', 'mass OR', 'x AND AND',
           'ünïcödé', '\\', '%', '_', 'NULL', '\u0000', "l'ung", "mass-like -lung \"AND* (OR)"]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(cat: Catalog, query: str) -> None:
    found = cat.models.search(query)
    assert isinstance(found, list)


def test_punctuated_query_finds_the_record(cat: Catalog) -> None:
    assert [e.id for e in cat.models.search("mass-like")] == ["mass-gan"]
    assert [e.id for e in cat.models.search('"AND')] == ["brain-vae"]
    assert [e.id for e in cat.models.search("lung nod")] == ["lung-ddpm"]  # every word a prefix
    assert cat.models.search("*") == []
    assert cat.models.search("zzzz-nothing") == []


def test_fts_query_quotes_every_term() -> None:
    assert fts_query('mass-like "AND *') == '"mass-like"* """AND"*'
    assert fts_query("  ") == ""


def test_filters_are_case_insensitive(cat: Catalog) -> None:
    assert [e.id for e in cat.models.search(modality="ct")] == ["lung-ddpm"]
    assert [e.id for e in cat.models.search(anatomy="BREAST")] == ["mass-gan"]
    assert [e.id for e in cat.models.search(architecture="ddpm")] == ["lung-ddpm"]
    assert [e.id for e in cat.models.search(architecture="Diffusion")] == ["lung-ddpm"]
    assert [e.id for e in cat.models.search(license="apache-2.0")] == ["lung-ddpm"]
    assert cat.models.search("lung", modality="MMG") == []


def test_rank_respects_better_direction(cat: Catalog) -> None:
    by_fid = [(e.id, e.score) for e in ranking.search(cat, rank="fid")]
    # one source only: three records report an FID, one also has an author-measured one (5.0),
    # which is never mixed in with the reported values
    assert by_fid == [("lung-ddpm", 10.0), ("mass-gan", 30.0), ("brain-vae", 50.0), ("no-metric", None)]
    r = ranking.choose(cat, "fid")
    assert (r.basis, r.source, r.better) == ("reported", "reported", "lower")
    assert "1 value(s) of another source left out" in r.note
    by_precision = [e.id for e in ranking.search(cat, rank="precision")]
    assert by_precision[:2] == ["lung-ddpm", "mass-gan"]  # higher is better
    assert by_precision[-1] == "no-metric"


def test_latest_excludes_yanked_and_follows_semver(tmp_path: Path, make_record: Any) -> None:
    c = Catalog.open(tmp_path / "c.db", readonly=False)
    with c.transaction():
        c.federation.put_upstream("p", accepted_commit="b" * 40)
        for v, status in [("1.9.0", "active"), ("1.10.0", "active"), ("2.0.0-rc.1", "active"), ("1.11.0", "yanked")]:
            kw = {"status": status}
            if status == "yanked":
                kw["status_reason"] = "broken weights"
            r = _rec(make_record, "toy", v, **kw)
            c.models.upsert_record("p", f"models/toy/{v}.json", r, "b" * 40)
        c.models.refresh_latest("p", ["toy"])
    assert [e.version for e in c.models.search("toy")] == ["1.10.0"]
    assert [e.version for e in c.models.list_models()] == ["1.10.0"]
    assert len(c.models.list_models(all_versions=True)) == 4
    assert version_key("2.0.0-rc.1") < version_key("1.0.0")  # a release is preferred
    assert version_key("1.10.0") > version_key("1.9.0")


def test_readonly_reader(cat: Catalog) -> None:
    ro = Catalog.open(cat.path)
    assert ro.models.count_models()["models"] == 4
    with pytest.raises(CatalogError, match="read-only"):
        ro.artefacts.set_artefact("a" * 64, state="verified")
    with pytest.raises(sqlite3.OperationalError):  # the file itself is opened mode=ro
        ro.conn.execute("DELETE FROM models")
    ro.close()
    # a rollback journal: readers without write access to the site can open it (issue 11, finding 9)
    assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "truncate"
    assert cat.generation() == GENERATION


def test_missing_or_foreign_catalog(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog.open(tmp_path / "none.db")
    p = tmp_path / "future.db"
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version={GENERATION + 5}")
    conn.close()
    with pytest.raises(CatalogError, match="generation"):
        Catalog.open(p)
    with pytest.raises(CatalogError, match="newer"):
        Catalog.open(p, readonly=False)


def test_tests_table(cat: Catalog) -> None:
    sha = cat.models.resolve("mass-gan@1.0.0").record.sha256
    with cat.transaction():
        cat.tests.record_test(model_id="mass-gan", version="1.0.0", passed=True, throughput=12.0, upstream="public",
                              sha256=sha)
        cat.tests.record_test(model_id="mass-gan", version="1.0.0", passed=False, reason="NaN in output",
                              report_path="reports/x.json", peak_memory_mb=100.0, runner_version="0.1", env_hash="e",
                              upstream="public", sha256=sha)
    assert [t["reason"] for t in cat.tests.failing_models()] == ["NaN in output"]
    assert len(cat.tests.last_tests("mass-gan@1.0.0")) == 2


def test_migrates_generation_1(tmp_path: Path, make_record: Any) -> None:
    """A generation-1 catalog (FTS over every row, via sqlite-utils triggers) is migrated on open."""
    c = Catalog.open(tmp_path / "old.db", readonly=False)
    with c.transaction():
        c.federation.put_upstream("p", accepted_commit="c" * 40)
        for v in ("1.0.0", "2.0.0"):
            c.models.upsert_record("p", f"models/toy/{v}.json", _rec(make_record, "toy", v), "c" * 40)
        c.models.refresh_latest("p", ["toy"])
        # rewind to the generation-1 layout
        for trig in [r[0] for r in c.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]:
            c.conn.execute(f"DROP TRIGGER {trig}")
        c.conn.execute("DROP TABLE models_fts")
        c.conn.execute("DELETE FROM facets WHERE field = 'upstream'")
        c.db.table("models").enable_fts(["title", "summary", "description", "modality", "anatomy", "generates",
                                         "tags", "architecture"], fts_version="FTS5", create_triggers=True)
        c.db.table("models").populate_fts(["title", "summary", "description", "modality", "anatomy", "generates",
                                           "tags", "architecture"])
        c.conn.execute("PRAGMA user_version=1")
    c.close()
    with pytest.raises(CatalogError, match="generation 1"):
        Catalog.open(tmp_path / "old.db")  # a reader never migrates
    c = Catalog.open(tmp_path / "old.db", readonly=False)
    assert c.generation() == GENERATION
    assert [e.version for e in c.models.search("toy")] == ["2.0.0"]
    assert [e.version for e in c.models.search("toy", upstream="p")] == ["2.0.0"]
    assert c.conn.execute("SELECT count(*) FROM models_fts_docsize").fetchone()[0] == 1


def test_generation_4_catalog_gains_the_evaluations_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.db"
    Catalog.open(path, readonly=False).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE evaluations")
    conn.execute("PRAGMA user_version=4")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="generation 4"):
        Catalog.open(path)  # a reader never migrates
    with Catalog.open(path, readonly=False) as c:
        assert c.generation() == GENERATION
        with c.transaction():
            c.evaluations.record_evaluation(run="r1", upstream="u", model_id="m", version="1.0.0", sha256="a" * 64,
                                            values={"fd": (1.5, "lower")}, key="k" * 64, reference="ref", extractor="x@1.0.0",
                                            params={}, provenance={"n_real": 3})
        assert c.evaluations.evaluation_keys("fd") == []  # the model is not served by this catalog


def _ranked_catalog(tmp_path: Path, make_record: Any) -> Catalog:
    """Several versions per id, ties, two values of one metric in one record, models
    without a value, a yanked latest and two upstreams."""
    c = Catalog.open(tmp_path / "ranked.db", readonly=False)
    with c.transaction():
        c.federation.put_upstream("public", priority=10, ord=0, accepted_commit="a" * 40)
        c.federation.put_upstream("lab", priority=20, ord=1, accepted_commit="b" * 40)
        for i in ((k * 17) % 40 for k in range(40)):  # row ids not in id order
            up = "lab" if i % 5 == 0 else "public"
            for v in ("1.0.0", "1.1.0"):
                metrics = [] if i % 7 == 0 else [
                    {"name": "FID", "value": float((i * 13 + len(v)) % 9), "better": "lower", "source": "reported"},
                    {"name": "FID", "value": float(i % 4) + 0.5, "better": "lower", "source": "reported"},
                    {"name": "precision", "value": (i % 6) / 10, "better": "higher", "source": "measured"}]
                r = _rec(make_record, f"m{i:02d}", v, title=f"Lung model {i}" if i % 3 else f"Brain model {i}",
                         modality=["CT" if i % 2 else "MRI"], anatomy=["lung"],
                         status="yanked" if (i == 4 and v == "1.1.0") else "active",
                         **({"status_reason": "bad"} if (i == 4 and v == "1.1.0") else {}), metrics=metrics)
                c.models.upsert_record(up, f"models/{r.id}/{v}.json", r, "a" * 40)
            c.models.refresh_latest(up, [f"m{i:02d}"])
    return c


QUERIES = [{"query": ""}, {"query": "lung"}, {"query": "model"}, {"query": "brain"}, {"query": "", "modality": "CT"},
           {"query": "model", "modality": "MRI"}, {"query": "", "upstream": "lab"}, {"query": "nothing-matches"},
           {"query": "", "limit": 7}, {"query": "lung", "limit": 3}, {"query": "", "limit": 0}]


@pytest.mark.parametrize("metric", ["fid", "precision", "absent"])
def test_ranked_walk_gives_the_same_page_as_the_sort(tmp_path: Path, make_record: Any, metric: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A search ranked by the records' values over many rows walks the values in order
    (search.walk_query); over a few it sorts the matches: both give the same page."""
    from synthmed.registry.catalog import models as models_mod

    c = _ranked_catalog(tmp_path, make_record)
    for q in QUERIES:
        monkeypatch.setattr(models_mod, "WALK_FROM", 10**9)  # always sort
        sorted_page = [(e.upstream, e.id, e.version, e.score) for e in ranking.search(c, rank=metric, **q)]
        monkeypatch.setattr(models_mod, "WALK_FROM", 0)  # always walk
        walked = [(e.upstream, e.id, e.version, e.score) for e in ranking.search(c, rank=metric, **q)]
        assert walked == sorted_page, q
    monkeypatch.setattr(models_mod, "WALK_FROM", 0)
    if metric == "fid":
        page = [(e.id, e.score) for e in ranking.search(c, rank="fid", limit=100)]
        scores = [s for _, s in page if s is not None]
        assert scores == sorted(scores) and len(scores) == 34  # lower is better; ids 0, 7, .., 35 have none
        assert [i for i, s in page[34:]] == sorted(i for i, s in page[34:]) and page[-1][1] is None
        assert "m04" in [i for i, _ in page]  # its 1.1.0 is yanked: 1.0.0 is served (and ranked)


def test_metric_counts_follow_every_write(tmp_path: Path, make_record: Any) -> None:
    """The counts ranking reads are kept on every write: upsert, replace, delete, drop."""
    c = _ranked_catalog(tmp_path, make_record)

    def recount() -> list[tuple[Any, ...]]:
        return sorted(c.conn.execute("SELECT name, coalesce(source, 'reported'), better, count(*) FROM metrics "
                                     "GROUP BY 1, 2, 3"))

    def counts() -> list[tuple[Any, ...]]:
        return sorted(c.conn.execute("SELECT name, source, better, n FROM metric_counts WHERE n > 0"))

    assert counts() == recount() and counts()
    with c.transaction():
        r = _rec(make_record, "m01", "1.0.0", metrics=[{"name": "kid", "value": 1.0, "better": "lower"}])
        c.models.upsert_record("public", "models/m01/1.0.0.json", r, "c" * 40)
        c.models.delete_path("public", "models/m02/1.1.0.json")
    assert counts() == recount()
    with c.transaction():
        c.federation.drop_upstream("lab")
        c.federation.drop_upstream("public")
    assert counts() == recount() == []
    assert ranking.choose(c, "fid").basis == "none"


def test_generation_5_catalog_keeps_ranking_at_write_time(tmp_path: Path, make_record: Any) -> None:
    """A generation-5 catalog (no metric_counts, no lowest/highest flags) is migrated on
    open, and ranks as before."""
    c = _ranked_catalog(tmp_path, make_record)
    before = {m: [(e.id, e.score) for e in ranking.search(c, rank=m, limit=100)] for m in ("fid", "precision")}
    path = c.path
    c.close()
    conn = sqlite3.connect(path)
    for stmt in ("DROP TRIGGER metric_counts_ai", "DROP TRIGGER metric_counts_ad", "DROP TABLE metric_counts",
                 "DROP INDEX metrics_lowest", "DROP INDEX metrics_highest", "ALTER TABLE metrics DROP COLUMN lowest",
                 "ALTER TABLE metrics DROP COLUMN highest",
                 "CREATE INDEX metrics_source ON metrics (name, source, better)", "PRAGMA user_version=5"):
        conn.execute(stmt)
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="generation 5"):
        Catalog.open(path)  # a reader never migrates
    with Catalog.open(path, readonly=False) as c2:
        assert c2.generation() == GENERATION
        assert c2.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'metrics_source'").fetchone()[0] == 0
        flags = c2.conn.execute("SELECT model, name, source, sum(lowest), sum(highest) FROM metrics "
                                "GROUP BY 1, 2, 3").fetchall()
        assert flags and all(lo == 1 and hi == 1 for *_, lo, hi in flags)
        r = ranking.choose(c2, "fid")
        assert (r.basis, r.source, r.better) == ("reported", "reported", "lower")
    with Catalog.open(path) as c3:
        from synthmed.registry.catalog import models as models_mod

        for walk_from in (0, 10**9):
            models_mod.WALK_FROM = walk_from
            try:
                after = {m: [(e.id, e.score) for e in ranking.search(c3, rank=m, limit=100)]
                         for m in ("fid", "precision")}
            finally:
                models_mod.WALK_FROM = 2000
            assert after == before


def test_generation_5_catalog_gains_the_audits_table_and_keeps_its_evaluations(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.db"
    with Catalog.open(path, readonly=False) as c, c.transaction():
        c.evaluations.record_evaluation(run="r1", upstream="u", model_id="m", version="1.0.0", sha256="a" * 64,
                                        values={"fd": (1.5, "lower")}, key="k" * 64, reference="ref",
                                        extractor="x@1.0.0", params={}, provenance={"n_real": 3})
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE audits")
    conn.execute("PRAGMA user_version=5")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="generation 5"):
        Catalog.open(path)  # a reader never migrates
    with Catalog.open(path, readonly=False) as c:
        assert c.generation() == GENERATION == 10
        assert len(c.evaluations.evaluations_of("u", "m", "1.0.0", "a" * 64)) == 1
        with c.transaction():
            c.audits.record_audit(run="a1", upstream="u", model_id="m", version="1.0.0", sha256="a" * 64,
                                  verdict="fail", training="train", holdout=None, extractor="x@1.0.0", n=64, seed=0,
                                  params={"steps": 5}, key="q" * 64, summary={"reasons": ["copies"], "values": {}},
                                  provenance={"n_generated": 64})
            with pytest.raises(CatalogError, match="not pass, review or fail"):
                c.audits.record_audit(run="a2", upstream="u", model_id="m", version="1.0.0", sha256="a" * 64,
                                      verdict="maybe", training="t", holdout=None, extractor="x", n=1, seed=0,
                                      params={}, key="q", summary={}, provenance={})
        (row,) = c.audits.audits_of("u", "m", "1.0.0", "a" * 64)
        assert row["verdict"] == "fail" and row["summary"]["reasons"] == ["copies"] and row["params"] == {"steps": 5}
        assert c.audits.has_audit("u", "m", "1.0.0", "a" * 64, "q" * 64, {"steps": 5})
        assert not c.audits.has_audit("u", "m", "1.0.0", "a" * 64, "q" * 64, {"steps": 6})
        assert c.audits.audit_summary() == []  # the model is not served by this catalog


def test_modality_and_anatomy_in_the_controlled_vocabulary(tmp_path: Path, make_record: Any) -> None:
    """Eleven spellings of mammography are one facet value, MG; a filter by any of them, or
    by the code, finds the record, and so does free text in any of them; breasts/breast and
    head/cranial are one anatomy term; a record's own words are kept (issue #26)."""
    from synthmed.registry import vocabulary

    words = ["MMG", "Mammography", "Mammogram", "full-field digital", "full-field digital MMG", "full-field MMG",
             "full-field Mammography", "digital Mammography", "digital MMG", "x-ray mammography"]
    assert {vocabulary.modality_code(w) for w in words} == {"MG", None}  # "full-field digital" alone says nothing
    assert vocabulary.modality_codes(["Brain MRI", "T1c", "Flair"]) == ["MR"]
    assert vocabulary.modality_codes(["colour fundus photograph"]) == ["OP"]
    assert vocabulary.anatomy_terms(["breasts", "breast", "chest"]) == ["breast", "chest"]
    assert vocabulary.anatomy_terms(["cranial", "head"]) == ["head"]
    assert vocabulary.facet_modalities(["something new"]) == ["something new"]  # nothing disappears
    c = Catalog.open(tmp_path / "v.db", readonly=False)
    with c.transaction():
        c.federation.put_upstream("p", accepted_commit="c" * 40)
        c.models.upsert_record("p", "models/mmg/1.0.0.json",
                               _rec(make_record, "mmg", modality=words, anatomy=["breasts", "chest"]), "c" * 40)
        c.models.upsert_record("p", "models/head/1.0.0.json",
                               _rec(make_record, "head", modality=["Cranial MRI"], anatomy=["cranial"]), "c" * 40)
        c.models.refresh_latest("p", ["mmg", "head"])
    facets = dict(c.conn.execute("SELECT field || ':' || value, count(*) FROM facets WHERE field IN "
                                 "('modality', 'anatomy') GROUP BY field, value").fetchall())
    assert facets == {"modality:mg": 1, "modality:mr": 1, "anatomy:breast": 1, "anatomy:chest": 1, "anatomy:head": 1}
    for value in ("MG", "mg", "mammography", "x-ray mammography", "MMG"):
        assert [e.id for e in c.models.search("", modality=value)] == ["mmg"], value
    assert [e.id for e in c.models.search("", anatomy="breasts")] == ["mmg"]
    assert [e.id for e in c.models.search("", anatomy="cranial")] == ["head"]
    assert [e.id for e in c.models.search("magnetic resonance")] == ["head"]  # the code's display name
    assert [e.id for e in c.models.search("Mammogram")] == ["mmg"]  # the record's own words
    assert c.models.resolve("mmg").record.data["modality"] == words  # the record is not rewritten
    # a catalog of generation 5 (facets in the records' own words) is migrated: derived again
    with c.transaction():
        c.conn.execute("DELETE FROM facets WHERE field = 'modality'")
        c.conn.executemany("INSERT INTO facets (model, field, value) SELECT pk, 'modality', ? FROM models WHERE id = 'mmg'",
                           [(w.lower(),) for w in words])
        c.conn.execute("PRAGMA user_version=5")
    c.close()
    with Catalog.open(tmp_path / "v.db", readonly=False) as c:
        assert c.generation() == GENERATION
        assert [r[0] for r in c.conn.execute("SELECT value FROM facets WHERE field = 'modality' ORDER BY value")] == [
            "mg", "mr"]
        assert [e.id for e in c.models.search("computed tomography")] == []
        assert [e.id for e in c.models.search("Mammography", modality="MG")] == ["mmg"]


def test_generation_9_catalog_gains_the_sanity_checks_table_and_keeps_the_rest(tmp_path: Path) -> None:
    """Generation 10 adds one table (extractor sanity checks); a generation-9 catalog is migrated
    by creating it, and its evaluations and audits stay."""
    import sqlite3

    path = tmp_path / "c.db"
    with Catalog.open(path, readonly=False) as c, c.transaction():
        c.evaluations.record_evaluation(run="r1", upstream="u", model_id="m", version="1.0.0", sha256="a" * 64,
                                        values={"fd": (1.5, "lower")}, key="k" * 64, reference="ref",
                                        extractor="x@1.0.0", params={}, provenance={"n_real": 3})
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE sanity_checks")
    conn.execute("PRAGMA user_version=9")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="generation 9"):
        Catalog.open(path)  # a reader never migrates
    with Catalog.open(path, readonly=False) as c:
        assert c.generation() == GENERATION == 10
        assert len(c.evaluations.evaluations_of("u", "m", "1.0.0", "a" * 64)) == 1
        with c.transaction():
            for run, ext, passed in (("s1", "randconv-224@1.0.0", 7), ("s2", "frd-radiomics@1.0.0", 5),
                                     ("s3", "randconv-224@1.0.0", 4)):
                c.sanity.record_sanity(run=run, reference="set", identity="i" * 64, extractor=ext, config="c",
                                       distance="fd", passed=passed, total=7,
                                       checks=[{"check": "halves", "passed": True}], provenance={"n_per_half": 50})
        rows = c.sanity.latest_for("i" * 64)  # the newest of each extractor, the most passed first
        assert [(r["extractor"], r["passed"]) for r in rows] == [("frd-radiomics@1.0.0", 5), ("randconv-224@1.0.0", 4)]
        assert rows[0]["checks"] == [{"check": "halves", "passed": True}] and rows[0]["provenance"]["n_per_half"] == 50
        assert c.sanity.latest_for("other") == []
