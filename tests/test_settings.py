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
