"""Dataset records (synthmed-dataset/1): the schema and the checks beyond it."""

from __future__ import annotations

import copy
import json

import pytest

from synthmed.registry.dataset_records import load_dataset_record, validate_dataset_data
from synthmed.registry.errors import RecordError

GOOD = {
    "format": "synthmed-dataset/1", "id": "ihc-s7", "version": "1.0.0", "title": "IHC patches",
    "summary": "16 IHC patches", "status": "active",
    "model": {"id": "ihc-patch-dcgan", "version": "1.0.0", "sha256": "e" * 64},
    "generation": {"outputs": ["image"], "params": {}, "first_seed": 7, "count": 16, "file_format": "png",
                   "layout": "synthmed", "manifest_sha256": "a" * 64},
    "artefact": {"sha256": "b" * 64, "size": 10, "media_type": "application/x-tar",
                 "sources": ["index:artefacts/datasets/ihc-s7/1.0.0.tar"]},
    "license": "MIT", "audit": {"verdict": "pass"},
    "card": {"intended_use": "tests", "limitations": "none"}, "authors": [{"name": "x"}],
}


def test_good_record_validates(tmp_path):
    path = tmp_path / "datasets" / "ihc-s7" / "1.0.0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(GOOD))
    rec = load_dataset_record(path)
    assert rec.ref == "ihc-s7@1.0.0" and rec.model_ref == "ihc-patch-dcgan@1.0.0"


@pytest.mark.parametrize("change, where", [
    (lambda d: d["audit"].update(verdict="fail"), "$.audit"),  # a failing audit needs a recorded override
    (lambda d: d["artefact"].update(sources=["index:../../etc/passwd"]), "$.artefact.sources[0]"),
    (lambda d: d.update(license="Apache 2"), "$.license"),
    (lambda d: d["model"].update(sha256="xyz"), "$.model.sha256"),
    # verify makes a whole chunk per call: a record cannot make a verifying site generate millions at once
    (lambda d: d["generation"].update(medigan_seed_chunk=10 ** 7), "$.generation.medigan_seed_chunk"),
    (lambda d: d["generation"].update(inputs=[{"name": "mask", "files_sha256": "c" * 64, "count": 1}] * 2),
     "$.generation.inputs"),
])
def test_bad_records_name_the_field(change, where):
    data = copy.deepcopy(GOOD)
    change(data)
    problems = validate_dataset_data(data, "rec.json", "datasets/ihc-s7/1.0.0.json")
    assert any(p.json_path.startswith(where) for p in problems), problems


def test_path_must_match_id_and_version(tmp_path):
    path = tmp_path / "datasets" / "other" / "1.0.0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(GOOD))
    with pytest.raises(RecordError) as err:
        load_dataset_record(path)
    assert "datasets/ihc-s7/1.0.0.json" in str(err.value)
