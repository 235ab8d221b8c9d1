"""Bad input from a new user: each gets a one-line ``error: ...`` with a hint (no
traceback), exit status 1, and nothing already stored is lost or corrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.packages import marker_package
from helpers.sites import make_site_home
from synthmed.cli import main


@pytest.fixture
def home(tmp_path: Path, toy_gan) -> Path:
    toy, _, _ = toy_gan
    marker, _, _ = marker_package(tmp_path / "m")
    return make_site_home(tmp_path / "site", [dict(toy.data), dict(marker.data)])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def assert_clear_error(rc: int, err: str, *words: str) -> None:
    assert rc == 1, err
    assert err.startswith("error: "), err
    assert "hint: " in err, err
    for w in words:
        assert w in err, (w, err)


# --- generate: the output folder ---------------------------------------------------


@pytest.mark.parametrize("below", ["", "sub"])
def test_generate_into_a_file_is_a_clear_error(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               below: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    out = afile / below if below else afile
    rc, err = run(capsys, "--site", str(home), "generate", "toy-gan", "-n", "2", "-o", str(out), "--no-progress")
    assert_clear_error(rc, err, f"{afile} is a file, not a folder")
    assert afile.read_text() == "keep me\n"


def test_a_run_that_wrote_nothing_does_not_block_the_folder(home: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A run that failed before its first sample leaves only a sidecar; a corrected
    rerun (other params) into the same folder must not be refused as "another run"."""
    from synthmed.output_folder import OutputFolder
    from synthmed import Site

    out = tmp_path / "out"
    record = Site(home).record("marker-model")
    failed = OutputFolder(out, record, "npy", 0, {"label": "benign", "steps": 99, "scale": 1.0, "flag": False})
    failed.open(3)
    failed.close(complete=False)  # as after a model that raised on its params
    rc, err = run(capsys, "--site", str(home), "generate", "marker-model", "-n", "2", "-o", str(out), "--format",
                  "npy", "--param", "steps=5", "--no-progress")
    assert rc == 0, err
    side = json.loads((out / "synthmed.json").read_text())
    assert side["params"]["steps"] == 5 and side["num_samples"] == 2 and side["complete"]
    # a folder that does hold samples is still protected
    rc, err = run(capsys, "--site", str(home), "generate", "marker-model", "-n", "2", "-o", str(out), "--format",
                  "npy", "--param", "steps=6", "--no-progress")
    assert_clear_error(rc, err, "already holds samples of another run")
    assert len(list((out / "image").iterdir())) == 2


def test_sidecar_is_complete_only_when_every_recorded_sample_is_there(home: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    base = ["--site", str(home), "generate", "toy-gan", "-o", str(out), "--format", "npy", "--no-progress"]
    assert run(capsys, *base, "-n", "5")[0] == 0
    (out / "image" / "000004.npy").unlink()  # as after an interrupted run of 5
    assert run(capsys, *base, "-n", "2")[0] == 0
    side = json.loads((out / "synthmed.json").read_text())
    assert side["num_samples"] == 5 and side["complete"] is False
    assert run(capsys, *base, "-n", "5")[0] == 0
    assert json.loads((out / "synthmed.json").read_text())["complete"] is True


# --- init and site.toml ----------------------------------------------------------------


def test_init_into_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    rc, err = run(capsys, "init", str(afile), "--upstream", f"public={tmp_path / 'idx'}")
    assert_clear_error(rc, err, f"{afile}", "is a file, not a folder")
    assert afile.read_text() == "keep me\n"


def test_init_with_a_subfolder_outside_the_repo_names_the_flag_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    rc, err = run(capsys, "init", str(site), "--upstream", f"p={tmp_path / 'idx'}#main:../..")
    assert_clear_error(rc, err, "--upstream 'p'", "'../..' leaves the repository")
    assert not site.exists()  # no half-made site, no site.toml.tmp


def test_init_warns_about_a_local_upstream_that_does_not_exist(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from synthmed.registry.authoring.site_config import init_site, parse_upstream_spec

    init_site(tmp_path / "site", [parse_upstream_spec(f"public={tmp_path / 'nowhere'}")])
    assert any("does not exist" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["binary", "folder"])
def test_unreadable_site_toml_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               kind: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    if kind == "binary":
        (site / "site.toml").write_bytes(b"\xff\xfe[site]\n")
    else:
        (site / "site.toml").mkdir()
    rc, err = run(capsys, "--site", str(site), "status")
    assert_clear_error(rc, err, str(site / "site.toml"))


def test_invalid_site_toml_points_at_the_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.toml").write_text('[site]\nnmae = "x"\n')
    rc, err = run(capsys, "--site", str(site), "status")
    assert_clear_error(rc, err, "$.site: unknown field(s): 'nmae'", "docs/sites.md")


# --- daemon --------------------------------------------------------------------------------


def test_daemon_unknown_job_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.sites import write_site

    write_site(tmp_path / "site", [])
    rc, err = run(capsys, "--site", str(tmp_path / "site"), "daemon", "run", "--once", "--job", "sinc")
    assert_clear_error(rc, err, "--job 'sinc'", "sync", "mirror")


# --- verify and test -----------------------------------------------------------------------


def test_verify_without_a_site_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(capsys, "--site", str(tmp_path / "nosite"), "verify")
    assert_clear_error(rc, err, f"no site at {tmp_path / 'nosite'}", "synthmed init")
    assert not (tmp_path / "nosite").exists()


@pytest.mark.parametrize("flag", [["--timeout", "-1"], ["--timeout", "0"], ["--report", "AFILE"],
                                  ["--num-samples", "0"]])
def test_test_flags_are_checked_before_anything_runs(home: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    args = [str(afile) if a == "AFILE" else a for a in flag]
    rc, err = run(capsys, "--site", str(home), "test", "toy-gan", *args)
    assert_clear_error(rc, err, flag[0])
    assert afile.read_text() == "keep me\n"
    assert not (home / "reports").exists()


# --- index check / validate / pin ------------------------------------------------------------


def _git_index(tmp_path: Path, make_record) -> tuple[Path, "object"]:
    from helpers.records import write_record
    from helpers.repos import commit, init_repo

    repo = init_repo(tmp_path / "idx")
    write_record(tmp_path / "idx", make_record())
    commit(repo, "first record")
    return tmp_path / "idx", repo


def test_index_check_with_a_wrong_index_dir_fails_instead_of_passing(tmp_path: Path, make_record,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = _git_index(tmp_path, make_record)
    rc, err = run(capsys, "index", "check", "--base", "HEAD", "--repo", str(root), "--index-dir", "indx")
    assert_clear_error(rc, err, "no indx/models/ folder", "--index-dir")


def test_index_check_reports_a_record_that_is_not_utf8(tmp_path: Path, make_record,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.repos import commit

    root, repo = _git_index(tmp_path, make_record)
    base = repo.head.commit.hexsha
    (root / "models" / "toy-gan" / "2.0.0.json").write_bytes(b"\xff\xfe{}")
    commit(repo, "bad bytes")
    rc = main(["index", "check", "--base", base, "--repo", str(root)])
    out = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out.err
    assert "models/toy-gan/2.0.0.json: $: not UTF-8 text" in out.out


def test_index_validate_of_a_folder_without_records_fails_even_with_other_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "some.json").write_text("{}")  # e.g. a package.json: not an index
    rc = main(["index", "validate", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 1
    assert f"error: {tmp_path}: $: no records found under {tmp_path / 'models'}" in out.err
    assert "FAILED: 0 record(s) checked" in out.out


@pytest.mark.parametrize("ref,words", [("nope@1.0.0", ["no model 'nope'", "folder names under"]),
                                       ("toy-gan@9.0.0", ["no version 9.0.0 of 'toy-gan'", "versions in this index: 1.0.0"])])
def test_index_pin_of_an_unknown_ref(tmp_path: Path, make_record, capsys: pytest.CaptureFixture[str],
                                     ref: str, words: list[str]) -> None:
    from helpers.records import write_record

    write_record(tmp_path / "idx", make_record())
    rc, err = run(capsys, "--site", str(tmp_path / "site"), "index", "pin", ref, "--index", str(tmp_path / "idx"))
    assert_clear_error(rc, err, *words)


def test_index_pin_with_a_folder_that_is_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(capsys, "--site", str(tmp_path / "site"), "index", "pin", "toy-gan@1.0.0",
                  "--index", str(tmp_path))
    assert_clear_error(rc, err, f"{tmp_path} is not an index folder", "--index")


# --- generation parameters ------------------------------------------------------------------


@pytest.mark.parametrize("param,words", [("steps=many", ["'steps'", "an integer"]),
                                         ("label=other", ["'label'", "one of"]),
                                         ("scale=nan", ["'scale'", "NaN"]),
                                         ("scale=inf", ["'scale'", "infinity"])])
def test_every_bad_param_gets_a_hint_and_nothing_runs(home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], param: str,
                                                      words: list[str]) -> None:
    out = tmp_path / "out"
    rc, err = run(capsys, "--site", str(home), "generate", "marker-model", "-n", "1", "-o", str(out),
                  "--param", param)
    assert_clear_error(rc, err, "synthmed show marker-model@1.0.0", *words)
    assert not out.exists()


def test_nan_param_is_refused_by_the_sdk_too(home: Path) -> None:
    from synthmed import Site
    from synthmed.registry.errors import ParamError

    with pytest.raises(ParamError, match="NaN"):
        Site(home).model("marker-model").sample(1, scale=float("nan"))


# --- export / import ----------------------------------------------------------------------


@pytest.fixture
def empty_site(tmp_path: Path) -> Path:
    from helpers.sites import sync, write_site

    settings = write_site(tmp_path / "site", [])
    sync(settings)  # makes the catalog
    return settings.home


@pytest.mark.parametrize("cmd", ["export", "import"])
@pytest.mark.parametrize("below", ["", "sub"])
def test_bundle_path_that_is_a_file(empty_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    cmd: str, below: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    rc, err = run(capsys, "--site", str(empty_site), cmd, str(afile / below if below else afile))
    assert_clear_error(rc, err, str(afile))
    assert afile.read_text() == "keep me\n"


@pytest.mark.parametrize("manifest,words", [
    ({"upstreams": [{"name": "x"}], "blobs": [{}]}, ["$.upstreams[0].bundle", "$.blobs[0].sha256"]),
    ({"upstreams": "abc", "blobs": 5}, ["$.upstreams: must be a list", "$.blobs: must be a list"]),
    ({"blobs": [{"sha256": "ab" * 32, "size": "big"}]}, ["$.blobs[0].size"])])
def test_import_of_a_malformed_manifest(empty_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        manifest: dict, words: list[str]) -> None:
    from synthmed.daemon.bundle import BUNDLE_FORMAT

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"format": BUNDLE_FORMAT, **manifest}))
    before = (empty_site / "site.toml").read_text()
    rc, err = run(capsys, "--site", str(empty_site), "import", str(bundle))
    assert_clear_error(rc, err, "malformed manifest; nothing was imported", *words)
    assert (empty_site / "site.toml").read_text() == before


# --- the SDK ----------------------------------------------------------------------------------


def test_sdk_without_a_site(tmp_path: Path) -> None:
    from synthmed import Generators
    from synthmed.registry.errors import SiteNotFound

    with pytest.raises(SiteNotFound, match="synthmed init"):
        Generators(tmp_path / "nosite").generate("nope", 1)
    assert not (tmp_path / "nosite").exists()


@pytest.mark.parametrize("kwargs,words", [({"num_samples": "3"}, ["num_samples must be a whole number", "'3'"]),
                                          ({"num_samples": 2.5}, ["num_samples must be a whole number"]),
                                          ({"num_samples": -1}, ["cannot make -1 samples"]),
                                          ({"num_samples": 1, "seed": "a"}, ["seed must be a whole number"])])
def test_sdk_counts_and_seeds_are_checked(home: Path, kwargs: dict, words: list[str]) -> None:
    from synthmed import Generators
    from synthmed.registry.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        Generators(home).generate("toy-gan", save_images=False, **kwargs)
    for w in words:
        assert w in str(info.value)
    assert info.value.hint


def test_sdk_numpy_counts_and_seeds_still_work(home: Path) -> None:
    import numpy as np
    from synthmed import Site

    out = Site(home).model("toy-gan").sample(np.int64(2), seed=np.int32(3))
    assert out["image"].shape[0] == 2


def test_sdk_dataset_visualize_and_refs(home: Path, tmp_path: Path) -> None:
    from synthmed import Generators, Site
    from synthmed.registry.errors import ConfigError, ModelNotFound

    g = Generators(home)
    with pytest.raises(ConfigError, match="cannot make -5 samples"):
        g.get_as_torch_dataset("toy-gan", num_samples=-5)
    with pytest.raises(ConfigError, match="must be 1 or more"):
        g.visualize("toy-gan", num_samples=0, output_path=tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()
    with pytest.raises(ModelNotFound, match="not a model reference"):
        Site(home).model(None)  # type: ignore[arg-type]


def test_sdk_generate_into_a_file(home: Path, tmp_path: Path) -> None:
    from synthmed import Generators
    from synthmed.registry.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        Generators(home).generate("toy-gan", 1, output_path=afile)
    assert afile.read_text() == "keep me\n"


def test_site_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    rc, err = run(capsys, "--site", str(afile), "status")
    assert_clear_error(rc, err, f"the site folder {afile} is not a folder", "SYNTHMED_HOME")


def test_status_names_a_corrupt_catalog_instead_of_no_catalog(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.sites import write_site

    settings = write_site(tmp_path / "site", [])
    settings.catalog_path.write_text("garbage")
    rc = main(["--site", str(settings.home), "status"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "no catalog yet" not in out
    assert "file is not a database" in out and "synthmed catalog rebuild" in out
    assert settings.catalog_path.read_text() == "garbage"  # status never touches it


# --- search and sync flags ---------------------------------------------------------------------


def _synced_site(tmp_path: Path, make_record) -> Path:
    from helpers.records import write_record
    from helpers.repos import commit, init_repo
    from helpers.sites import sync, write_site

    repo = init_repo(tmp_path / "idx")
    write_record(tmp_path / "idx", make_record())
    commit(repo, "a record")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": str(tmp_path / "idx")}])
    sync(settings)
    return settings.home


@pytest.mark.parametrize("flags,words", [(["search", "--upstream", "pubic"], ["--upstream 'pubic'", "public"]),
                                         (["search", "--limit", "-1"], ["--limit -1"]),
                                         (["sync", "--accept-rewrite", "pubic"], ["'pubic'", "public"])])
def test_unknown_upstream_and_negative_limit_are_errors(tmp_path: Path, make_record,
                                                        capsys: pytest.CaptureFixture[str], flags: list[str],
                                                        words: list[str]) -> None:
    home = _synced_site(tmp_path, make_record)
    rc, err = run(capsys, "--site", str(home), *flags)
    assert_clear_error(rc, err, *words)
    assert main(["--site", str(home), "search", "--upstream", "public", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "toy-gan"


# --- interrupting generate, then resuming ------------------------------------------------------


def test_interrupted_generate_says_how_to_resume_and_resumes(home: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.output_folder import OutputFolder

    out = tmp_path / "out"
    real_write = OutputFolder.write
    calls = {"n": 0}

    def write_then_ctrl_c(self: OutputFolder, index: int, sample: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        real_write(self, index, sample)

    monkeypatch.setattr(OutputFolder, "write", write_then_ctrl_c)
    args = ["--site", str(home), "generate", "toy-gan", "-n", "6", "-o", str(out), "--format", "npy",
            "--batch-size", "2", "--no-progress"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 130 and "run the same command again to resume" in err and "Traceback" not in err
    assert len(list((out / "image").glob("*.npy"))) == 3
    assert json.loads((out / "synthmed.json").read_text())["complete"] is False
    monkeypatch.setattr(OutputFolder, "write", real_write)
    assert main(args) == 0
    assert "3 written, 3 already there" in capsys.readouterr().out
    assert json.loads((out / "synthmed.json").read_text())["complete"] is True
    assert not [p for p in (out / "image").iterdir() if p.name.startswith(".")]  # no temp files left


# --- numbers from flags, and commands before a site exists --------------------------------------


@pytest.mark.parametrize("flags", [["status", "--stale-after", "0"],
                                   ["daemon", "run", "--once", "--sync-interval", "0"],
                                   ["generate", "toy-gan", "-n", "1", "-o", "OUT", "--batch-size", "0"]])
def test_bad_numbers_from_flags_get_hints(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          flags: list[str]) -> None:
    (home / "site.toml").write_text("")
    args = [str(tmp_path / "out") if a == "OUT" else a for a in flags]
    rc, err = run(capsys, "--site", str(home), *args)
    assert_clear_error(rc, err, flags[-2])
    assert not (tmp_path / "out").exists()


def test_test_before_a_site_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(capsys, "--site", str(tmp_path / "nosite"), "test", "toy-gan")
    assert_clear_error(rc, err, f"no synthmed site at {tmp_path / 'nosite'}", "synthmed init")


@pytest.mark.parametrize("target", ["DIR", "AFILE/grid.png"])
def test_visualize_to_a_folder_or_under_a_file(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               target: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    path = str(tmp_path) if target == "DIR" else str(afile / "grid.png")
    rc, err = run(capsys, "--site", str(home), "visualize", "toy-gan", "-n", "2", "-o", path)
    assert_clear_error(rc, err, "cannot write the grid to")
    assert afile.read_text() == "keep me\n"


# --- index import-medigan ---------------------------------------------------------------------------


@pytest.mark.parametrize("content,words", [(b"\xff\xfe{}", ["not UTF-8 text"]),
                                           (b"{}", ["holds no model entries"]),
                                           (b"[]", ["expected an object"]),
                                           (None, ["cannot be read"])])
def test_import_medigan_of_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      content: bytes | None, words: list[str]) -> None:
    src = tmp_path / "global.json"
    if content is None:
        src.mkdir()
    else:
        src.write_bytes(content)
    rc, err = run(capsys, "index", "import-medigan", str(src), "--into", str(tmp_path / "idx"))
    assert_clear_error(rc, err, str(src), *words)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_generate_timeout_must_be_positive(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           timeout: str) -> None:
    out = tmp_path / "out"
    rc, err = run(capsys, "--site", str(home), "generate", "toy-gan", "-n", "1", "-o", str(out),
                  "--mode", "worker", "--timeout", timeout)
    assert_clear_error(rc, err, f"--timeout {timeout}")
    assert not out.exists()


def test_output_into_a_closed_pipe_is_quiet(tmp_path: Path, make_record, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`synthmed search --json | head -1`: the reader goes away; no BrokenPipeError traceback."""
    import io
    import sys

    home = _synced_site(tmp_path, make_record)

    class ClosedPipe(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    rc = main(["--site", str(home), "search", "--json"])
    assert rc == 141
    assert "Traceback" not in capsys.readouterr().err


def test_sync_of_an_upstream_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.sites import write_site

    settings = write_site(tmp_path / "site", [{"name": "public", "url": str(tmp_path / "nowhere")}])
    rc = main(["--site", str(settings.home), "sync"])
    cap = capsys.readouterr()
    assert rc == 1 and "Traceback" not in cap.err
    assert "public: failed: cannot fetch branch 'main'" in cap.out
    assert f"hint: check upstream 'public' (url, branch) in {settings.site_file}" in cap.err


def test_sync_of_a_site_without_upstreams_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.sites import write_site

    settings = write_site(tmp_path / "site", [])
    assert main(["--site", str(settings.home), "sync"]) == 0
    err = capsys.readouterr().err
    assert "names no upstreams" in err and "[[upstreams]]" in err


def test_search_rank_by_a_metric_nobody_reports(tmp_path: Path, make_record,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    home = _synced_site(tmp_path, make_record)
    assert main(["--site", str(home), "search", "--rank", "no-such-metric"]) == 0
    cap = capsys.readouterr()
    assert "None" not in cap.out
    assert "none of these models reports or has measured the metric 'no-such-metric'" in cap.err
