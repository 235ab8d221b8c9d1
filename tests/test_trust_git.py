"""Hostile upstream names and URLs (init, site.toml, bundle manifests) and robust
export/import (issue 11, findings 1 and 12).

Threat model (TUF/apt style): whoever writes a bundle, an upstream URL in a mail, or a
site.toml snippet controls every string in it. None of them may run a command, touch a
folder synthmed did not make, leak a password into a message, or change the site when
the import is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.daemon.bundle import export_bundle, import_bundle
from synthmed.daemon.service import run_daemon
from synthmed.daemon.upstreams import UpstreamRepo
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import BundleError, ConfigError
from synthmed.registry.settings import Upstream, load_settings
from synthmed.registry.authoring.site_config import init_site, parse_upstream_spec
from synthmed.registry.upstream_check import BUNDLE_URL, check_branch, check_name, check_url

from helpers.records import with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, cli_env, run_cli, sync, write_site


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI run from ``cwd`` (for relative folders)."""
    return subprocess.run([sys.executable, "-m", "synthmed.cli", *args], capture_output=True, text=True,
                          timeout=120, env=cli_env(GIT_TERMINAL_PROMPT="0"), cwd=str(cwd))


def _evil(marker: Path) -> str:
    """The URL of the finding: git reads it as --upload-pack and runs CMD."""
    return f"--upload-pack=touch {marker}; : ://x"


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its content (folders and links too),
    leaving out the SQLite WAL side files and the lock file, which any opener touches."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if name in ("catalog.db-wal", "catalog.db-shm", "catalog.db", "site.lock"):
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _site_state(settings: Any) -> tuple[dict[str, str], Any]:
    with catalog(settings) as cat:
        snap = cat.snapshot()
        runs = cat.conn.execute("SELECT count(*) FROM sync_runs").fetchone()[0]
    return _tree(settings.home), (snap, runs)


@pytest.fixture(scope="module")
def exported_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    tmp = tmp_path_factory.mktemp("trust")
    repo = init_repo(tmp / "idx")
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "lung-gan"))
    commit(repo)
    settings = write_site(tmp / "online", [{"name": "public", "url": repo.working_dir}])
    run_daemon(settings, once=True, only=["sync", "mirror"])
    dest = tmp / "bundle"
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        export_bundle(settings, cat, dest)
    return settings, dest


@pytest.fixture
def bundle(tmp_path: Path, exported_once: tuple[Any, Path]) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(exported_once[1], copy)
    return copy


def _offline(tmp_path: Path, name: str = "offline", **site: Any) -> Any:
    init_site(tmp_path / name, [])
    if site:
        text = (tmp_path / name / "site.toml").read_text()
        for k, v in site.items():
            text = text.replace("[site]\n", f"[site]\n{k} = {json.dumps(v)}\n", 1)
        (tmp_path / name / "site.toml").write_text(text)
    s = load_settings(tmp_path / name, {}, environ={})
    with Catalog.open(s.catalog_path, readonly=False):
        pass  # the catalog exists before the import, as on any site
    return s


def _edit_manifest(folder: Path, /, **fields: Any) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["upstreams"][0].update(fields)
    path.write_text(json.dumps(data))


# -- finding 1: the --upload-pack URL, three ways in ------------------------------------

def test_upload_pack_url_via_init_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    site = tmp_path / "site"
    r = run_cli(["init", str(site), "--upstream", f"public={_evil(marker)}"])
    if r.returncode == 0:  # the code before the fix wrote it; the next sync ran CMD
        run_cli(["--site", str(site), "sync", "--no-mirror"])
    assert not marker.exists()
    assert r.returncode != 0 and "--upstream" in r.stderr and "starts with '-'" in r.stderr
    assert not (site / "site.toml").exists()


def test_upload_pack_url_via_site_toml_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = {json.dumps(_evil(marker))}\n')
    r = run_cli(["--site", str(site), "sync", "--no-mirror"])
    assert not marker.exists()
    assert r.returncode != 0
    assert "site.toml" in r.stderr and "upstream 'public', url" in r.stderr and "option" in r.stderr


@pytest.mark.slow
def test_upload_pack_url_via_bundle_manifest_runs_nothing(tmp_path: Path, bundle: Path) -> None:
    marker = tmp_path / "PWNED"
    _edit_manifest(bundle, url=_evil(marker))
    offline = _offline(tmp_path)
    r = run_cli(["--site", str(offline.home), "import", str(bundle)])
    run_cli(["--site", str(offline.home), "sync", "--no-mirror"])  # the sync after the import
    assert not marker.exists()
    assert r.returncode == 1 and "$.upstreams[0].url" in r.stderr, r.stderr
    assert load_settings(offline.home, {}, environ={}).upstreams == ()


def test_daemon_refuses_a_hostile_url_given_through_the_python_api(tmp_path: Path) -> None:
    """Upstream objects can be made without site.toml: the fetch checks the URL again."""
    marker = tmp_path / "PWNED"
    s = write_site(tmp_path / "site", [])
    from synthmed.daemon.sync import sync_upstream

    with Catalog.open(s.catalog_path, readonly=False) as cat:
        res = sync_upstream(s, cat, Upstream(name="public", url=_evil(marker)))
    assert res.status == "failed" and "starts with '-'" in str(res.reason)
    assert not marker.exists()


# -- finding 1: hostile names in a bundle manifest ---------------------------------------

@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_manifest_name_outside_upstreams_leaves_the_folder_untouched(tmp_path: Path, bundle: Path,
                                                                      kind: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("do not delete")
    offline = _offline(tmp_path)
    name = "../../victim" if kind == "dotdot" else str(victim)
    _edit_manifest(bundle, name=name)
    before = _site_state(offline)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match=r"\$\.upstreams\[0\]\.name") as exc:
            import_bundle(offline, cat, bundle)
    assert "not a valid upstream name" in str(exc.value)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "do not delete"
    assert _site_state(offline) == before


def test_sync_never_removes_a_folder_synthmed_did_not_make(tmp_path: Path) -> None:
    """A folder in the mirror's place that is not a git mirror: the old code emptied it."""
    repo = init_repo(tmp_path / "idx")
    s = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir}])
    squatter = s.upstreams_dir / "public"
    squatter.mkdir(parents=True)
    (squatter / "notes.txt").write_text("mine")
    [res] = sync(s)
    assert res.status == "failed" and "did not make it" in str(res.reason)
    assert (squatter / "notes.txt").read_text() == "mine"


def test_an_interrupted_mirror_synthmed_made_is_still_repaired(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "idx")
    write_record(Path(repo.working_dir), with_artefact(Path(repo.working_dir), "lung-gan"))
    commit(repo)
    s = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir}])
    UpstreamRepo.for_upstream(s.upstreams_dir, "public").ensure().close()
    shutil.rmtree(s.upstreams_dir / "public" / "objects")  # broken, but marked as ours
    [res] = sync(s)
    assert res.status == "ok", res.reason


# -- finding 12: relative folders, non-bundles, partial exports --------------------------

@pytest.mark.slow
def test_export_and_import_with_relative_folders(tmp_path: Path, exported_once: tuple[Any, Path]) -> None:
    online, _ = exported_once
    work = tmp_path / "work"
    work.mkdir()
    r = _cli(["--site", str(online.home), "export", "rel-bundle"], cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "rel-bundle" / "manifest.json").is_file()
    offline = _offline(tmp_path)
    r = _cli(["--site", str(offline.home), "import", "rel-bundle"], cwd=work)
    assert r.returncode == 0, r.stderr
    with catalog(offline) as cat:
        assert cat.models.resolve("public/lung-gan").version == "1.0.0"


def test_a_failed_export_leaves_no_partial_folder(tmp_path: Path, exported_once: tuple[Any, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    online, _ = exported_once

    def broken(self: UpstreamRepo, dest: Path) -> None:
        raise git.GitCommandError(["git", "bundle"], 128, b"fatal: disk full")

    monkeypatch.setattr(UpstreamRepo, "bundle", broken)
    dest = tmp_path / "new" / "bundle"
    empty = tmp_path / "empty"
    empty.mkdir()
    with Catalog.open(online.catalog_path, readonly=False) as cat:
        for target in (dest, empty):
            with pytest.raises(BundleError, match="disk full"):
                export_bundle(online, cat, target)
    assert not (tmp_path / "new").exists()
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_a_file_that_is_not_a_git_bundle_is_refused_cleanly(tmp_path: Path, bundle: Path) -> None:
    junk = bundle / "upstreams" / "public.bundle"
    junk.write_bytes(b"this is not a git bundle\n")
    _edit_manifest(bundle, sha256=hashlib.sha256(junk.read_bytes()).hexdigest(), size=junk.stat().st_size)
    offline = _offline(tmp_path)
    before = _site_state(offline)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="not a usable git bundle"):
            import_bundle(offline, cat, bundle)
    assert _site_state(offline) == before
    assert not (offline.upstreams_dir / "public").exists()
    r = run_cli(["--site", str(offline.home), "import", str(bundle)])
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not a usable git bundle" in r.stderr


@pytest.mark.parametrize("damage", ["stray-blob", "bad-commit", "tampered-blob", "late-ancestry"])
def test_a_failed_import_leaves_the_site_exactly_as_it_was(tmp_path: Path, bundle: Path,
                                                            exported_once: tuple[Any, Path], damage: str) -> None:
    """A site that already follows the upstream (so a mirror and a catalog exist)."""
    online, _ = exported_once
    site = _offline(tmp_path)
    with Catalog.open(site.catalog_path, readonly=False) as cat:
        import_bundle(site, cat, bundle)  # a first, good import
    site = load_settings(site.home, {}, environ={})
    if damage == "stray-blob":
        (bundle / "blobs" / ("e" * 64)).write_bytes(b"smuggled")
    elif damage == "bad-commit":
        _edit_manifest(bundle, commit="HEAD")
    elif damage == "tampered-blob":
        victim = next((bundle / "blobs").iterdir())
        os.chmod(victim, 0o644)
        victim.write_bytes(b"x" + victim.read_bytes()[1:])
    else:  # a bundle from another history: found only after fetching it into the staging mirror
        other = init_repo(tmp_path / "other")
        write_record(Path(other.working_dir), with_artefact(Path(other.working_dir), "lung-gan"))
        commit(other)
        o = write_site(tmp_path / "other-site", [{"name": "public", "url": other.working_dir}])
        run_daemon(o, once=True, only=["sync", "mirror"])
        shutil.rmtree(bundle)
        with Catalog.open(o.catalog_path, readonly=False) as cat:
            export_bundle(o, cat, bundle)
    before = _site_state(site)
    with Catalog.open(site.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError):
            import_bundle(site, cat, bundle)
    assert _site_state(site) == before
    assert not any(p.name.startswith(".import-staging-") for p in site.home.iterdir())


@pytest.mark.slow
def test_import_never_adds_a_network_upstream(tmp_path: Path, bundle: Path) -> None:
    """The exporter followed https://; the air-gapped site records 'bundle:' and its sync
    fetches nothing (the exporter's URL is only a comment, password redacted)."""
    _edit_manifest(bundle, url="https://alice:s3cret@git.example.org/index.git")
    offline = _offline(tmp_path, offline=True)
    r = run_cli(["--site", str(offline.home), "import", str(bundle)])
    assert r.returncode == 0, r.stderr
    s = load_settings(offline.home, {}, environ={})
    assert [(u.name, u.url) for u in s.upstreams] == [("public", BUNDLE_URL)]
    text = s.site_file.read_text()
    assert "git.example.org" in text and "s3cret" not in text
    r = run_cli(["--site", str(offline.home), "sync", "--no-mirror"])
    assert r.returncode == 0 and "updated only by `synthmed import`" in r.stdout + r.stderr
    r = run_cli(["--site", str(offline.home), "import", str(bundle)])  # a later bundle still applies
    assert r.returncode == 0, r.stderr


def test_a_bundle_folder_name_cannot_inject_into_site_toml(tmp_path: Path, bundle: Path) -> None:
    odd = tmp_path / 'b\n[[upstreams]]\nname = "evil"\nurl = "x"\n#'
    bundle.rename(odd)
    offline = _offline(tmp_path)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        import_bundle(offline, cat, odd)
    assert [u.name for u in load_settings(offline.home, {}, environ={}).upstreams] == ["public"]


# -- adversarial inputs: names ------------------------------------------------------------

BAD_NAMES = [
    "publ\u0456c",            # Cyrillic i: looks like "public"
    "\uff50ublic",            # fullwidth p
    "public\n",               # a trailing newline passes '^...$' in Python and JSON Schema
    "pub\x00lic",             # NUL
    "pub\u202eilc",           # right-to-left override
    "a" * 33,                 # overlong
    "a" * 5000,
    "..", ".", "../x", "/etc", "a/b", "a\\b", "-x", "Public", "a.b", "",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_upstream_names_are_refused_everywhere(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid upstream name"):
        check_name(name, "test")
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.toml").write_text(f'[[upstreams]]\nname = {json.dumps(name)}\nurl = "/srv/idx"\n')
    with pytest.raises(ConfigError, match="name"):
        load_settings(site, {}, environ={})
    if name == name.strip():  # a flag's surrounding whitespace is trimmed, as in any CLI
        with pytest.raises(ConfigError):
            init_site(tmp_path / "new", [parse_upstream_spec(f"{name}=/srv/idx")])
        assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["publ\u0456c", "public\n", "a" * 33, "x\x00"])
def test_bad_names_in_a_manifest_are_refused(tmp_path: Path, bundle: Path, name: str) -> None:
    _edit_manifest(bundle, name=name, bundle=f"upstreams/{name}.bundle")
    offline = _offline(tmp_path)
    before = _site_state(offline)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="not a valid upstream name"):
            import_bundle(offline, cat, bundle)
    assert _site_state(offline) == before


# -- adversarial inputs: URLs and branches --------------------------------------------------

BAD_URLS = [
    "--upload-pack=touch /tmp/x; : ://x",
    "-u touch /tmp/x",
    "ext::sh -c touch% /tmp/x",
    "fd::17",
    "foo::bar",
    "ssh://-oProxyCommand=touch%20/tmp/x/repo",
    "ssh://-x@host/repo",
    "-oProxyCommand=x:repo",
    "git@-oProxyCommand=x:repo",
    "https://example.org/x\n--upload-pack=y",
    "https://example.org/x\x00",
    "https://ex\u0430mple.org/x",   # Cyrillic a in the host
    "HTTPS://example.org/x",
    "ftp://example.org/x",
    "javascript:alert(1)://",
    "file://host/x",
    "https:///no-host",
    " /leading-space",
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="refused|missing"):
        check_url(url, "test")


GOOD_URLS = ["https://github.com/org/index.git", "http://127.0.0.1:8080/idx.git", "ssh://git@host:2222/idx.git",
             "git://host/idx.git", "file:///srv/idx", "git@github.com:org/index.git", "host:idx.git",
             "/srv/index", "../srv/index.git", "relative/index", "~/index", "https://[::1]:8443/x.git",
             "/mnt/USB stick/index", BUNDLE_URL]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls_are_accepted(url: str) -> None:
    assert check_url(url, "test") == url


def test_credentials_never_appear_in_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    with pytest.raises(ConfigError) as exc:
        check_url("https://alice:s3cret@exa mple.org\n/x", "site.toml")
    assert "s3cret" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_upstream_spec("https://alice:s3cret@example.org/x")  # NAME= forgotten
    assert "s3cret" not in str(exc.value)
    s = write_site(tmp_path / "site", [{"name": "public", "url": "https://alice:s3cret@127.0.0.1:1/x.git"}])
    [res] = sync(s)
    assert res.status == "failed"
    assert "s3cret" not in str(res.reason) and "alice:***@127.0.0.1" in str(res.reason)
    with catalog(s) as cat:
        assert all("s3cret" not in str(r) for r in cat.conn.execute("SELECT * FROM sync_runs"))


@pytest.mark.parametrize("where", ["site", "upstreams", "upstreams/other", "store"])
def test_file_urls_pointing_at_the_site_itself_are_refused(tmp_path: Path, where: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    target = site / where if where != "site" else site
    for url in (f"file://{target}", str(target)):
        (site / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = {json.dumps(url)}\n')
        with pytest.raises(ConfigError, match="site .* itself"):
            load_settings(site, {}, environ={})
    with pytest.raises(ConfigError, match="itself"):
        init_site(site, [parse_upstream_spec(f"public=file://{target}")], force=True)


@pytest.mark.parametrize("branch", ["-x", "main:refs/synthmed/accepted", "a..b", "main\n", "x.lock", "/main",
                                    "main/", "ma in", "ma\u0456n", "@{-1}", ".hidden", ""])
def test_bad_branches_are_refused(tmp_path: Path, branch: str) -> None:
    with pytest.raises(ConfigError, match="branch"):
        check_branch(branch, "test")
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.toml").write_text(
        f'[[upstreams]]\nname = "public"\nurl = "/srv/idx"\nbranch = {json.dumps(branch)}\n')
    with pytest.raises(ConfigError):
        load_settings(site, {}, environ={})


@pytest.mark.parametrize("field,value,match", [
    ("bundle", "../../etc/passwd", "upstreams/<name>.bundle"),
    ("commit", "HEAD", "not a full commit id"),
    ("commit", "--all", "not a full commit id"),
    ("branch", "--upload-pack=x", "branch"),
    ("subfolder", "../../x", "subfolder"),
    ("sha256", "../x", "not a sha256"),
    ("allowed_signers", ["a@b ssh-ed25519 AAAA\nevil@x ssh-ed25519 BBBB"], "allowed-signers"),
    ("priority", True, "priority"),
])
def test_hostile_manifest_fields_are_refused(tmp_path: Path, bundle: Path, field: str, value: Any,
                                             match: str) -> None:
    _edit_manifest(bundle, **{field: value})
    offline = _offline(tmp_path)
    before = _site_state(offline)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match=match):
            import_bundle(offline, cat, bundle)
    assert _site_state(offline) == before


def test_duplicate_and_symlinked_manifest_entries_are_refused(tmp_path: Path, bundle: Path) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    data["upstreams"].append(dict(data["upstreams"][0]))
    (bundle / "manifest.json").write_text(json.dumps(data))
    offline = _offline(tmp_path)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="more than once"):
            import_bundle(offline, cat, bundle)
        data["upstreams"].pop()
        (bundle / "manifest.json").write_text(json.dumps(data))
        real = bundle / "upstreams" / "public.bundle"
        shutil.move(str(real), str(tmp_path / "elsewhere.bundle"))
        real.symlink_to(tmp_path / "elsewhere.bundle")
        with pytest.raises(BundleError, match="not a regular file"):
            import_bundle(offline, cat, bundle)
