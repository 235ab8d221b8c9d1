"""Issue 11, findings 2, 8 and 13, against real git repositories and the real sync:

- 2: a merged version cannot be substituted by deleting it and re-adding it later (sync,
  rebuild and ``index check`` all remember every version ever accepted);
- 8: one pathological record (deep nesting, huge numbers, duplicate keys, ...) is skipped
  alone and never freezes its upstream; a later yank still applies;
- 13: test results belong to one upstream's package (upstream, id, version, sha256).

Plus adversarial records: what JSON, Unicode and regular expressions can do to a parser.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.cli import main
from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.daemon.status import site_status
from synthmed.registry.catalog import Catalog
from synthmed.registry.catalog.models import ModelStore
from synthmed.registry.errors import RecordError
from synthmed.registry.authoring.indexcheck import check_index
from synthmed.registry.checks.modeltest_site import record_results
from synthmed.registry.records import load_record, load_record_text
from synthmed.registry.checks.report import ModelTestResult

from helpers.records import deep_set, make_record, unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, sync, write_site

# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def index(tmp_path: Path) -> git.Repo:
    """An index (records at the repository root) with a pinned x-gan@1.0.0 and a bystander."""
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "x-gan", content=b"the original weights\n" * 8))
    write_record(root, unverified("bystander"))
    commit(repo, "x-gan 1.0.0")
    return repo


def _site(tmp_path: Path, repo: git.Repo, name: str = "public") -> Any:
    return write_site(tmp_path / "site", [{"name": name, "url": repo.working_dir}])


def _refs(settings: Any) -> list[str]:
    with catalog(settings) as cat:
        return sorted(e.qualified_ref for e in cat.models.list_models(all_versions=True))


def _problems(settings: Any) -> dict[str, str]:
    with catalog(settings) as cat:
        return {p["path"]: p["reason"] for p in cat.models.problems()}


def _replace_x(repo: git.Repo, content: bytes) -> str:
    """Re-add x-gan@1.0.0 with another artefact (another sha256)."""
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "x-gan", content=content))
    return commit(repo, "x-gan 1.0.0, again")


def _delete_x(repo: git.Repo) -> str:
    (Path(repo.working_dir) / "models" / "x-gan" / "1.0.0.json").unlink()
    return commit(repo, "delete x-gan 1.0.0")


# -- finding 2: a merged version cannot be substituted ---------------------------------------


def test_deleted_then_readded_with_another_package_is_refused(tmp_path: Path, index: git.Repo) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    with catalog(settings) as cat:
        original = cat.models.resolve("x-gan@1.0.0").record.sha256
    _delete_x(index)
    [r] = sync(settings)
    assert r.status == "ok" and "public/x-gan@1.0.0" not in _refs(settings)  # deleting still works
    _replace_x(index, b"substituted weights\n" * 8)
    root = Path(index.working_dir)
    write_record(root, unverified("newcomer"))
    commit(index, "a newcomer")
    [r] = sync(settings)
    assert r.status == "ok"  # the rest of the update proceeds
    assert [p for p, _ in r.skipped] == ["models/x-gan/1.0.0.json"]
    assert "x-gan@1.0.0" in r.skipped[0][1] and "package" in r.skipped[0][1] and "immutable" in r.skipped[0][1]
    assert "public/x-gan@1.0.0" not in _refs(settings) and "public/newcomer@1.0.0" in _refs(settings)
    with catalog(settings) as cat:
        st = site_status(settings, cat)
        row = cat.conn.execute("SELECT sha256 FROM accepted_versions WHERE id = 'x-gan'").fetchone()
        assert row[0] == original  # what was first accepted stays bound
    assert [p["path"] for p in st["problems"]] == ["models/x-gan/1.0.0.json"]


def test_delete_and_readd_between_two_syncs_is_refused(tmp_path: Path, index: git.Repo) -> None:
    """The site never saw the deletion: the diff shows a plain change of the version. The
    deletion withdrew it (as a sync in between would have seen), so nothing is served for it."""
    settings = _site(tmp_path, index)
    sync(settings)
    _delete_x(index)
    _replace_x(index, b"substituted weights\n" * 8)
    [r] = sync(settings)
    assert r.status == "ok" and [p for p, _ in r.skipped] == ["models/x-gan/1.0.0.json"]
    assert "public/x-gan@1.0.0" not in _refs(settings) and "nothing is served" in r.skipped[0][1]


def test_substitution_made_before_the_first_sync_is_refused(tmp_path: Path, index: git.Repo) -> None:
    """The history binds a version at its first appearance, whenever the site first syncs."""
    _delete_x(index)
    _replace_x(index, b"substituted weights\n" * 8)
    settings = _site(tmp_path, index)
    [r] = sync(settings)
    assert [p for p, _ in r.skipped] == ["models/x-gan/1.0.0.json"]
    assert _refs(settings) == ["public/bystander@1.0.0"]


def test_readding_with_identical_immutable_fields_is_allowed(tmp_path: Path, index: git.Repo) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    root = Path(index.working_dir)
    text = (root / "models" / "x-gan" / "1.0.0.json").read_text()
    _delete_x(index)
    sync(settings)
    data = json.loads(text)
    data["description"] = "restored"  # a mutable field may differ
    write_record(root, data)
    commit(index, "restore x-gan 1.0.0")
    [r] = sync(settings)
    assert r.status == "ok" and not r.skipped
    with catalog(settings) as cat:
        assert cat.models.resolve("x-gan@1.0.0").record.data["description"] == "restored"


def test_rebuild_and_a_lost_catalog_remember_deleted_versions(tmp_path: Path, index: git.Repo) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    _delete_x(index)
    sync(settings)
    _replace_x(index, b"substituted weights\n" * 8)
    sync(settings)
    with catalog(settings) as cat:
        incremental = cat.snapshot()
    assert incremental["accepted"] and incremental["problems"]
    fresh = tmp_path / "fresh.db"
    rebuild_catalog(settings, fresh)
    with Catalog.open(fresh) as cat:
        assert cat.snapshot() == incremental
    # a catalog lost altogether: the next sync walks the history again and still refuses
    for suffix in ("", "-wal", "-shm"):
        Path(str(settings.catalog_path) + suffix).unlink(missing_ok=True)
    (Path(index.working_dir) / "README.md").write_text("touched\n")
    commit(index, "unrelated")
    [r] = sync(settings)
    assert [p for p, _ in r.skipped] == ["models/x-gan/1.0.0.json"]
    assert "public/x-gan@1.0.0" not in _refs(settings)


def test_catalog_from_before_accepted_versions_walks_the_history(tmp_path: Path, index: git.Repo) -> None:
    """A catalog migrated from generation 2 has no accepted_versions yet: the next sync
    binds the whole history before it accepts anything."""
    settings = _site(tmp_path, index)
    sync(settings)
    _delete_x(index)
    sync(settings)
    with Catalog.open(settings.catalog_path, readonly=False) as cat, cat.transaction():
        cat.conn.execute("DELETE FROM accepted_versions")
        cat.conn.execute("UPDATE upstreams SET bound_commit = NULL")
    _replace_x(index, b"substituted weights\n" * 8)
    [r] = sync(settings)
    assert [p for p, _ in r.skipped] == ["models/x-gan/1.0.0.json"]


def test_index_check_refuses_readding_a_deleted_version(tmp_path: Path, index: git.Repo) -> None:
    root = Path(index.working_dir)
    text = (root / "models" / "x-gan" / "1.0.0.json").read_text()
    base = _delete_x(index)
    index.git.checkout("-q", "-b", "readd")
    _replace_x(index, b"substituted weights\n" * 8)
    result = check_index(root, base, "readd", index_dir="")
    assert not result.ok
    [p] = result.problems
    assert "x-gan@1.0.0 was merged before" in p.message and "deleted since" in p.message
    assert "package" in p.message and "new version" in p.message
    # the same immutable fields: a restore, allowed with a warning
    index.git.checkout("-q", "main")
    index.git.checkout("-q", "-b", "restore")
    (root / "models" / "x-gan" / "1.0.0.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "models" / "x-gan" / "1.0.0.json").write_text(text)
    commit(index, "restore")
    result = check_index(root, base, "restore", index_dir="")
    assert result.ok and any("deleted since" in w.message for w in result.warnings)


# -- finding 8: one pathological record never freezes its upstream ---------------------------


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_deeply_nested_record_is_skipped_alone_and_a_later_yank_applies(tmp_path: Path, index: git.Repo) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    root = Path(index.working_dir)
    (root / "models" / "deep-gan").mkdir(parents=True)
    (root / "models" / "deep-gan" / "1.0.0.json").write_text('{"id": "deep-gan", "x": ' + _deep(100_000) + "}")
    write_record(root, unverified("fine-gan"))
    commit(index, "a poisoned record and a fine one")
    [r] = sync(settings)
    assert r.status == "ok"
    assert [p for p, _ in r.skipped] == ["models/deep-gan/1.0.0.json"]
    assert "nest deeper than 64" in r.skipped[0][1] and "deep-gan/1.0.0.json" in r.skipped[0][1]
    assert "public/fine-gan@1.0.0" in _refs(settings)
    # a yank of another record in a later commit still applies
    data = json.loads((root / "models" / "bystander" / "1.0.0.json").read_text())
    data.update(status="yanked", status_reason="withdrawn: broken weights")
    write_record(root, data)
    commit(index, "yank bystander")
    [r] = sync(settings)
    assert r.status == "ok"
    with catalog(settings) as cat:
        assert [e.status for e in cat.models.rows_for_id("bystander")] == ["yanked"]


def _valid_with(name: str, dotted: str, raw: str) -> str:
    """A valid record's JSON text with the value at ``dotted`` replaced by the raw JSON ``raw``."""
    data = unverified(name)
    deep_set(data, dotted, "@@PLACEHOLDER@@")
    return json.dumps(data).replace('"@@PLACEHOLDER@@"', raw)


@pytest.mark.parametrize("name,dotted,raw,expected", [
    ("huge-int", "test.seed", "9" * 5000, "digits"),  # ValueError from int(): rolled back the upstream
    ("lone-surrogate", "title", '"A lesion generator \\ud800"', "unpaired surrogate"),  # UnicodeEncodeError in SQLite
    ("nan-metric", "metrics.0.value", "NaN", "NaN and Infinity"),  # accepted a NaN metric
    ("overflow", "metrics.0.value", "1e999", "out of range"),  # accepted an infinite metric
    ("dup-key", "license", '"MIT", "license": "Apache-2.0"', "appears twice"),  # which one wins?
])
def test_pathological_json_in_a_sync_skips_only_that_record(tmp_path: Path, index: git.Repo, name: str,
                                                              dotted: str, raw: str, expected: str) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    root = Path(index.working_dir)
    (root / "models" / name).mkdir(parents=True)
    (root / "models" / name / "1.0.0.json").write_text(_valid_with(name, dotted, raw))
    write_record(root, unverified("fine-gan"))
    commit(index)
    [r] = sync(settings)
    assert r.status == "ok" and [p for p, _ in r.skipped] == [f"models/{name}/1.0.0.json"]
    assert expected in r.skipped[0][1]
    assert "public/fine-gan@1.0.0" in _refs(settings)


def test_oversized_and_binary_records_are_skipped(tmp_path: Path, index: git.Repo) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    root = Path(index.working_dir)
    big = unverified("big-gan", description="x" * (1 << 20))
    write_record(root, big)
    (root / "models" / "latin1-gan").mkdir(parents=True)
    (root / "models" / "latin1-gan" / "1.0.0.json").write_bytes(b'{"id": "latin1-gan", "title": "caf\xe9"}')
    bom = unverified("bom-gan")
    (root / "models" / "bom-gan").mkdir(parents=True)
    (root / "models" / "bom-gan" / "1.0.0.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(bom).encode())
    write_record(root, unverified("fine-gan"))
    commit(index)
    [r] = sync(settings)
    skipped = dict(r.skipped)
    assert "too large" in skipped["models/big-gan/1.0.0.json"]
    assert "UTF-8" in skipped["models/latin1-gan/1.0.0.json"]
    assert "byte order mark" in skipped["models/bom-gan/1.0.0.json"]
    assert "public/fine-gan@1.0.0" in _refs(settings)


def test_any_failure_while_applying_one_record_skips_only_it(tmp_path: Path, index: git.Repo,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _site(tmp_path, index)
    sync(settings)
    root = Path(index.working_dir)
    write_record(root, unverified("cursed-gan"))
    write_record(root, unverified("fine-gan"))
    data = json.loads((root / "models" / "bystander" / "1.0.0.json").read_text())
    data.update(status="yanked", status_reason="withdrawn")
    write_record(root, data)
    commit(index)
    real = ModelStore.upsert_record

    def flaky(self: ModelStore, upstream: str, path: str, record: Any, commit_sha: str) -> None:
        real(self, upstream, path, record, commit_sha)  # writes first, then fails: the savepoint undoes it
        if record.id == "cursed-gan":
            raise OSError("simulated failure")

    monkeypatch.setattr(ModelStore, "upsert_record", flaky)
    [r] = sync(settings)
    assert r.status == "ok" and [p for p, _ in r.skipped] == ["models/cursed-gan/1.0.0.json"]
    assert "OSError" in r.skipped[0][1]
    refs = _refs(settings)
    assert "public/fine-gan@1.0.0" in refs and "public/cursed-gan@1.0.0" not in refs
    with catalog(settings) as cat:
        assert [e.status for e in cat.models.rows_for_id("bystander")] == ["yanked"]
        assert not cat.conn.execute("SELECT count(*) FROM facets f LEFT JOIN models m ON m.pk = f.model "
                                    "WHERE m.pk IS NULL").fetchone()[0]


# -- adversarial records ------------------------------------------------------------------------


def _text(**over: Any) -> str:
    return json.dumps(make_record(**over))


@pytest.mark.parametrize("text,expected", [
    ("[" * 65 + "]" * 65, "nest deeper than 64"),
    ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nest deeper than 64"),
    ('{"a": "' + "x" * (1 << 20) + '"}', "too large"),
    ('{"a": 1, "a": 2}', "twice"),
    ('{"a": NaN}', "NaN"),
    ('{"a": Infinity}', "Infinity"),
    ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1e400}', "out of range"),
    ('{"a": ' + "1" * 4500 + "}", "digits"),
    ('{"a": "\\udc00"}', "surrogate"),
    ("\ufeff{}", "byte order mark"),
])
def test_parser_refuses_pathological_json_with_a_record_error(text: str, expected: str) -> None:
    with pytest.raises(RecordError) as exc:
        load_record_text(text, "models/x/1.0.0.json")
    assert expected in exc.value.message and "models/x/1.0.0.json" in exc.value.message


def test_nesting_up_to_the_bound_is_parsed() -> None:
    # 64 levels parse (then fail validation as a record, as a RecordError, not a crash)
    with pytest.raises(RecordError, match="must be a JSON object"):
        load_record_text("[" * 64 + "]" * 64, "x.json")
    deep_inputs = {"type": "object"}
    for _ in range(30):
        deep_inputs = {"type": "object", "properties": {"a": deep_inputs}}
    rec = load_record_text(_text(inputs=deep_inputs, **{"test.params": {}}), "models/mass-gan/1.0.0.json")
    assert rec.id


def test_depth_scan_is_linear_on_hostile_strings() -> None:
    # unterminated strings full of escaped quotes: a naive scanner backtracks quadratically
    for text in ('"' + '\\"' * 400_000, '["' + "\\" * 900_000, '"' * 900_000):
        started = time.monotonic()
        with pytest.raises(RecordError):
            load_record_text(text, "x.json")
        assert time.monotonic() - started < 5


def test_non_utf8_record_file(tmp_path: Path) -> None:
    p = tmp_path / "models" / "x-gan" / "1.0.0.json"
    p.parent.mkdir(parents=True)
    p.write_bytes(b'{"title": "\xff\xfe"}')
    with pytest.raises(RecordError, match="not UTF-8"):
        load_record(p)
    p.write_bytes(b"{" + b" " * (2 << 20) + b"}")
    with pytest.raises(RecordError, match="too large"):
        load_record(p)


@pytest.mark.parametrize("field,value", [
    ("id", "mass-gan\n"),  # Python's $ matches before a final newline
    ("id", "m\u0430ss-gan"),  # Cyrillic a: a look-alike id
    ("id", "MASS-GAN"),
    ("version", "1.0.1\u0661"),  # an Arabic-Indic digit: Python's \d matches it
    ("version", "1.0.0\n"),
    ("package.artefact.sha256", "ab" * 32 + "\n"),
    ("outputs.0.name", "image\n"),
])
def test_lookalike_and_trailing_newline_values_are_refused(field: str, value: str) -> None:
    data = make_record(**{field: value})
    rel = f"models/{data['id']}/{data['version']}.json"
    with pytest.raises(RecordError):
        load_record_text(json.dumps(data), rel, rel)


def test_schema_patterns_are_not_catastrophic() -> None:
    """Every pattern of the record schema runs in linear time on long hostile input."""
    from synthmed.registry.schemas_io import ecma_pattern, load_schema

    patterns: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(load_schema("record"))
    assert patterns
    hostile = ["1.0.0-" + "1" * 50_000 + "!", "1.0.0-" + ".1" * 25_000 + "!", "a" * 50_000 + "!",
               "index:" + "a" * 50_000 + "\n", "10.1234/" + "x" * 50_000 + " ", "0" * 50_000 + "-"]
    for pat in patterns:
        compiled = ecma_pattern(pat)
        for text in hostile:
            started = time.monotonic()
            compiled.search(text)
            assert time.monotonic() - started < 1, pat


# -- finding 13: test results belong to one upstream's package --------------------------------


def _two_upstreams(tmp_path: Path) -> Any:
    """public and hospital both publish x-gan@1.0.0, each with its own package."""
    repos = {}
    for name in ("public", "hospital"):
        repo = init_repo(tmp_path / name)
        root = Path(repo.working_dir)
        write_record(root, with_artefact(root, "x-gan", content=f"{name} weights\n".encode() * 8))
        commit(repo, "x-gan")
        repos[name] = repo
    settings = write_site(tmp_path / "site", [
        {"name": "public", "url": repos["public"].working_dir, "priority": 1},
        {"name": "hospital", "url": repos["hospital"].working_dir, "priority": 2},
    ])
    sync(settings)
    return settings


def _result(entry: Any, status: str, reason: str | None = None) -> ModelTestResult:
    return ModelTestResult(ref=entry.ref, id=entry.id, version=entry.version, status=status, reason=reason,
                           started="2025-01-01T00:00:00+00:00", finished="2025-01-01T00:01:00+00:00",
                           duration_s=60.0, fingerprint="f", upstream=entry.upstream, sha256=entry.record.sha256)


def test_test_results_do_not_leak_across_upstreams(tmp_path: Path, capsys: Any) -> None:
    settings = _two_upstreams(tmp_path)
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        public = cat.models.resolve("public/x-gan@1.0.0")
        record_results(cat, [_result(public, "failed", "NaN in output")], None)
    home = str(settings.home)
    assert main(["--site", home, "show", "hospital/x-gan@1.0.0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tests"] == []
    assert main(["--site", home, "show", "public/x-gan@1.0.0", "--json"]) == 0
    assert [t["passed"] for t in json.loads(capsys.readouterr().out)["tests"]] == [0]
    assert main(["--site", home, "search", "--json", "--upstream", "hospital"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    assert found["ref"] == "hospital/x-gan@1.0.0" and found["last_test"] is None
    assert main(["--site", home, "search", "--upstream", "hospital"]) == 0
    assert "FAILING" not in capsys.readouterr().out
    assert main(["--site", home, "status", "--json"]) == 3  # unhealthy: a model's last test failed
    failing = json.loads(capsys.readouterr().out)["failing_models"]
    assert [(t["upstream"], t["ref"]) for t in failing] == [("public", "x-gan@1.0.0")]


def test_nightly_due_logic_is_per_upstream_and_package(tmp_path: Path) -> None:
    from synthmed.registry.checks.modeltest_site import due_for_test, last_test_by_key, test_key
    from synthmed.registry.checks.report import environment

    settings = _two_upstreams(tmp_path)
    env = environment()
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        public = cat.models.resolve("public/x-gan@1.0.0")
        hospital = cat.models.resolve("hospital/x-gan@1.0.0")
        record_results(cat, [_result(public, "passed")], None)
        last = last_test_by_key(cat)
    assert test_key(public) in last and test_key(hospital) not in last
    assert due_for_test(hospital, last.get(test_key(hospital)), env) == "never tested"


def test_migration_attributes_old_test_runs_only_where_unambiguous(tmp_path: Path) -> None:
    settings = _two_upstreams(tmp_path)
    root = Path(tmp_path / "public")
    repo = git.Repo(root)
    write_record(root, with_artefact(root, "only-public", content=b"only here\n" * 8))
    commit(repo, "only-public")
    sync(settings)
    path = settings.catalog_path
    with Catalog.open(path) as cat:
        shas = {e.qualified_ref: e.record.sha256 for e in cat.models.list_models(all_versions=True)}
    # rewind to generation 2: tests rows without sha256, some without upstream
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE tests")
    conn.execute("""CREATE TABLE tests (id INTEGER PRIMARY KEY AUTOINCREMENT, upstream TEXT, model_id TEXT NOT NULL,
        version TEXT NOT NULL, ref TEXT NOT NULL, started TEXT, finished TEXT, passed INTEGER NOT NULL, reason TEXT,
        report_path TEXT, throughput REAL, peak_memory_mb REAL, runner_version TEXT, env_hash TEXT)""")
    rows = [(None, "x-gan", "ambiguous"), (None, "only-public", "unique"), ("hospital", "x-gan", "named"),
            (None, "gone-gan", "unknown")]
    for upstream, mid, reason in rows:
        conn.execute("INSERT INTO tests (upstream, model_id, version, ref, passed, reason) VALUES (?,?,?,?,?,?)",
                     (upstream, mid, "1.0.0", f"{mid}@1.0.0", 0, reason))
    conn.execute("DROP TABLE accepted_versions")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    with Catalog.open(path, readonly=False) as cat:
        got = {r[0]: (r[1], r[2]) for r in cat.conn.execute("SELECT reason, upstream, sha256 FROM tests")}
        failing = sorted(t["qualified_ref"] for t in cat.tests.failing_models())
    assert got == {"unique": ("public", shas["public/only-public@1.0.0"]),
                   "named": ("hospital", shas["hospital/x-gan@1.0.0"])}
    assert failing == ["hospital/x-gan@1.0.0", "public/only-public@1.0.0"]
