"""Record validation: the valid fixture passes; every invalid fixture fails naming its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmed.registry import errors, records
from synthmed.registry.semver import parse_version

from helpers import FIXTURES
from helpers.records import write_record

INVALID = FIXTURES / "records" / "invalid"
EXPECTED = json.loads((FIXTURES / "records" / "invalid-expected.json").read_text())


def test_valid_fixture_loads() -> None:
    rec = records.load_record_text((FIXTURES / "records" / "valid" / "full.json").read_text(), "full.json")
    assert rec.ref == "toy-gan@1.0.0"
    assert rec.verified
    assert rec.outputs[0]["name"] == "image"


def test_at_least_25_invalid_fixtures() -> None:
    assert len(EXPECTED) >= 25
    assert sorted(p.name for p in INVALID.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_fixture_names_json_path(name: str) -> None:
    exp = EXPECTED[name]
    where = f"index/models/x/{name}"
    with pytest.raises(errors.RecordError) as info:
        records.load_record_text((INVALID / name).read_text(), where)
    matches = [p for p in info.value.problems if p.json_path == exp["json_path"]]
    assert matches, f"no problem at {exp['json_path']}: {[str(p) for p in info.value.problems]}"
    assert any(exp["fragment"] in p.message for p in matches), [str(p) for p in matches]
    # the message names the file and the JSON path
    assert f"{where}: {exp['json_path']}: " in str(info.value)


def test_all_errors_reported_not_only_first(make_record) -> None:
    data = make_record(**{"id": "BAD", "version": "x", "license": "nope", "package.artefact.sha256": "abc"})
    with pytest.raises(errors.RecordError) as info:
        records.load_record_text(json.dumps(data), "r.json")
    paths = {p.json_path for p in info.value.problems}
    assert {"$.id", "$.version", "$.license", "$.package.artefact.sha256"} <= paths


def test_error_message_example_form(make_record) -> None:
    data = make_record(**{"id": "x-model", "package.artefact.sha256": "abc"})
    with pytest.raises(errors.RecordError) as info:
        records.load_record_text(json.dumps(data), "index/models/x-model/1.0.0.json", "models/x-model/1.0.0.json")
    assert ("index/models/x-model/1.0.0.json: $.package.artefact.sha256: 'abc' is not 64 hexadecimal characters"
            in str(info.value))


def test_path_must_match_id_and_version(tmp_path: Path, make_record) -> None:
    data = make_record()
    path = write_record(tmp_path, data)
    assert records.load_record(path).ref == "toy-gan@1.0.0"
    wrong = tmp_path / "models" / "toy-gan" / "2.0.0.json"
    wrong.write_text(path.read_text())
    with pytest.raises(errors.RecordError) as info:
        records.load_record(wrong)
    assert any(p.json_path == "$.id" and "models/toy-gan/1.0.0.json" in p.message for p in info.value.problems)


def test_unverified_is_a_warning_not_an_error(tmp_path: Path, make_record) -> None:
    data = make_record(**{"package.artefact.sha256": ..., "package.artefact.size": ...})
    write_record(tmp_path, data)
    report = records.validate_path(tmp_path)
    assert report.ok
    assert report.unverified == ["toy-gan@1.0.0"]
    assert "unverified" in report.warnings[0].message
    assert "synthmed index pin toy-gan@1.0.0" in report.warnings[0].message


def test_validate_path_errors(tmp_path: Path) -> None:
    assert not records.validate_path(tmp_path / "nope").ok
    (tmp_path / "models" / "x").mkdir(parents=True)
    (tmp_path / "models" / "stray.json").write_text("{}")
    report = records.validate_path(tmp_path)
    assert not report.ok


def test_missing_file_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(errors.RecordError, match="file not found"):
        records.load_record(tmp_path / "missing.json")


def test_spdx_expressions() -> None:
    from synthmed.registry import spdx

    assert spdx.check_expression("MIT") is None
    assert spdx.check_expression("Apache-2.0 OR MIT") is None
    assert spdx.check_expression("(MIT AND BSD-3-Clause)") is None
    assert spdx.check_expression("GPL-2.0-only WITH Classpath-exception-2.0") is None
    assert spdx.check_expression("NOASSERTION") is None
    assert spdx.check_expression("MIT OR") is not None
    assert "did you mean" in (spdx.check_expression("apache-2.0") or "")


def test_semver_ordering() -> None:
    vs = ["1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "0.9.12", "1.10.0", "1.2.0"]
    ordered = [str(v) for v in sorted(parse_version(v) for v in vs)]
    assert ordered == ["0.9.12", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0", "1.2.0", "1.10.0"]
    with pytest.raises(ValueError, match="not a semantic version"):
        parse_version("1.0")


def test_errors_inherit_builtins() -> None:
    assert issubclass(errors.ArtefactNotFound, FileNotFoundError)
    assert issubclass(errors.ArtefactNotFound, errors.SynthmedError)
    assert issubclass(errors.RecordError, ValueError)
    e = errors.SourceError("boom", hint="try again", source="https://x")
    assert e.source == "https://x" and "hint: try again" in str(e)
