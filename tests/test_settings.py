"""Typed settings: flag > environment > site.toml > defaults; clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthmed.registry.errors import ConfigError
from synthmed.registry.settings import load_settings


def _site(tmp_path: Path, text: str) -> Path:
    (tmp_path / "site.toml").write_text(text)
    return tmp_path


def test_defaults_without_site_toml(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.home == tmp_path and s.runner.device == "auto" and s.upstreams == ()
    assert s.catalog_path == tmp_path / "catalog.db"
    assert s.store_dir == tmp_path / "store"


def test_home_from_environment(tmp_path: Path) -> None:
    s = load_settings(None, environ={"SYNTHMED_HOME": str(tmp_path)})
    assert s.home == tmp_path


def test_precedence_flag_env_toml_default(tmp_path: Path) -> None:
    _site(tmp_path, '[runner]\ndevice = "cpu"\nbatch_size = 8\n')
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    assert load_settings(tmp_path, environ={"SYNTHMED_DEVICE": "cuda:1"}).runner.device == "cuda:1"
    s = load_settings(tmp_path, {"device": "cuda:0", "batch_size": None}, environ={"SYNTHMED_DEVICE": "cuda:1"})
    assert s.runner.device == "cuda:0" and s.runner.batch_size == 8


def test_upstreams_sorted_by_priority(tmp_path: Path) -> None:
    _site(tmp_path, """
[[upstreams]]
name = "b"
url = "/x"
priority = 20
[[upstreams]]
name = "a"
url = "/y"
priority = 10
subfolder = "index"
""")
    s = load_settings(tmp_path, environ={})
    assert [u.name for u in s.upstreams] == ["a", "b"]
    assert s.upstream("a").subfolder == "index"
    with pytest.raises(ConfigError, match="no upstream named 'c'"):
        s.upstream("c")


def test_bad_toml_names_file(tmp_path: Path) -> None:
    _site(tmp_path, "[runner\n")
    with pytest.raises(ConfigError, match="site.toml: not valid TOML"):
        load_settings(tmp_path, environ={})


def test_schema_errors_name_path(tmp_path: Path) -> None:
    _site(tmp_path, '[runner]\ndevice = "tpu"\n')
    with pytest.raises(ConfigError, match=r"\$\.runner\.device"):
        load_settings(tmp_path, environ={})


def test_bad_env_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SYNTHMED_OFFLINE"):
        load_settings(tmp_path, environ={"SYNTHMED_OFFLINE": "perhaps"})
    assert load_settings(tmp_path, environ={"SYNTHMED_OFFLINE": "yes"}).offline


def test_http_settings_from_site_toml(tmp_path: Path) -> None:
    assert load_settings(tmp_path, environ={}).sources.http_backoff_s == 0.5
    _site(tmp_path, "[sources.http]\nconnect_timeout_s = 5\nread_timeout_s = 7\nretries = 1\nbackoff_s = 0.25\n")
    src = load_settings(tmp_path, environ={}).sources
    assert (src.http_connect_timeout_s, src.http_read_timeout_s, src.http_retries, src.http_backoff_s) == (5, 7, 1, 0.25)
    _site(tmp_path, "[sources.http]\nbackoff_s = -1\n")
    with pytest.raises(ConfigError, match=r"\$\.sources\.http\.backoff_s"):
        load_settings(tmp_path, environ={})


def test_site_toml_is_schema_validated_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry import schemas_io
    from synthmed.registry.settings import SITE_FILE_MEMO

    calls: list[str] = []
    real = schemas_io.validate_against

    def counted(name: str, data: object, where: str) -> list[schemas_io.Problem]:
        calls.append(where)
        return real(name, data, where)

    monkeypatch.setattr(schemas_io, "validate_against", counted)
    _site(tmp_path, '[runner]\ndevice = "cpu"\n')
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    assert len(calls) == 1 and (tmp_path / SITE_FILE_MEMO).is_file()
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    assert len(calls) == 1  # the same bytes passed the same schema: not validated again
    # any change to the bytes is validated again, and an invalid file is refused every time, never remembered
    memo = (tmp_path / SITE_FILE_MEMO).read_bytes()
    _site(tmp_path, '[runner]\ndevice = "cpu"\nbogus = 1\n')
    for _ in range(2):
        with pytest.raises(ConfigError, match="bogus"):
            load_settings(tmp_path, environ={})
    assert len(calls) == 3 and (tmp_path / SITE_FILE_MEMO).read_bytes() == memo
    # a memo that does not match (another schema, a hand edit) is not trusted
    _site(tmp_path, '[runner]\ndevice = "cpu"\n')
    (tmp_path / SITE_FILE_MEMO).write_text("synthmed-validated/1\n" + "0" * 64 + "\n")
    load_settings(tmp_path, environ={})
    assert len(calls) == 4 and (tmp_path / SITE_FILE_MEMO).read_bytes() == memo


def test_site_toml_memo_keys_on_the_schema_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry import schemas_io

    _site(tmp_path, '[runner]\ndevice = "cpu"\n')
    load_settings(tmp_path, environ={})
    # a synthmed whose schema refuses what the memo says passed: validated again, and refused
    strict = b'{"type": "object", "properties": {"runner": {"type": "object", "additionalProperties": false}}}'
    monkeypatch.setattr(schemas_io, "schema_bytes", lambda name: strict)
    monkeypatch.setattr(schemas_io, "validator", lambda name: schemas_io.strict_validator_class()(
        schemas_io.json.loads(strict)))
    with pytest.raises(ConfigError, match="runner"):
        load_settings(tmp_path, environ={})


def test_site_toml_memo_on_a_site_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from synthmed.registry.settings import SITE_FILE_MEMO

    _site(tmp_path, '[runner]\ndevice = "cpu"\n')
    (tmp_path / "cache").write_text("a file where the cache folder would be")  # no memo can be written
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    (tmp_path / "cache").unlink()
    # another user's site (root running `synthmed status`, say): read, never written into
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 1)
    assert load_settings(tmp_path, environ={}).runner.device == "cpu"
    assert not (tmp_path / "cache").exists()
    monkeypatch.undo()
    load_settings(tmp_path, environ={})
    assert (tmp_path / SITE_FILE_MEMO).is_file()  # the owner records it, and any user may then rely on it
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / SITE_FILE_MEMO).unlink()
        (tmp_path / "cache").chmod(0o555)  # a folder this user cannot write: validated, not recorded
        try:
            assert load_settings(tmp_path, environ={}).runner.device == "cpu"
            assert not (tmp_path / SITE_FILE_MEMO).exists()
        finally:
            (tmp_path / "cache").chmod(0o755)
