"""Where a contribution's artefact goes, and the index it is recorded in: Zenodo (a
deposition made and published with zenodo-client; the token from the settings, the
environment or a token file, never printed), a DVC remote (``dvc add`` and ``dvc push`` in a
DVC-enabled git repository) or the index repository itself (small files only). The
flags and credentials of each are checked before anything is zipped (:func:`check_store`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ContributeError
from ..settings import Settings


@dataclass(frozen=True)
class ZenodoTokenEnv:
    """Where the environment says a Zenodo token is (``synthmed contribute --store zenodo``).

    The token's precedence (explicit > settings > ``token`` > a token file: the one passed,
    ``token_file``, then ``default_token_file``) is applied by
    :func:`synthmed.registry.authoring.contribute.zenodo_token`.
    """

    token: str | None  # SYNTHMED_ZENODO_TOKEN
    token_file: Path | None  # SYNTHMED_ZENODO_TOKEN_FILE
    default_token_file: Path  # $XDG_CONFIG_HOME (or ~/.config)/synthmed/zenodo-token


def zenodo_token_sources(environ: Mapping[str, str] | None = None) -> ZenodoTokenEnv:
    """Read the Zenodo token variables from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    cfg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return ZenodoTokenEnv(
        token=env.get("SYNTHMED_ZENODO_TOKEN") or None,
        token_file=Path(env["SYNTHMED_ZENODO_TOKEN_FILE"]) if env.get("SYNTHMED_ZENODO_TOKEN_FILE") else None,
        default_token_file=cfg / "synthmed" / "zenodo-token",
    )


STORES = ("zenodo", "dvc", "index")
#: the largest artefact kept in the index repository itself (git is no blob store)
INDEX_MAX_BYTES = 5 * 1024 * 1024
TOKEN_ENV = "SYNTHMED_ZENODO_TOKEN"


# --- the index repository -------------------------------------------------------------


@dataclass
class IndexLocation:
    repo_root: Path
    subfolder: str  # "" or e.g. "index"

    def rel(self, path: str) -> str:
        return f"{self.subfolder}/{path}" if self.subfolder else path


def locate_index(index: Path) -> IndexLocation:
    import git

    index = Path(index).resolve()
    try:
        repo = git.Repo(index, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ContributeError(f"{index}: not inside a git repository",
                              hint="pass --index with a clone of the index repository (the folder holding models/)"
                              ) from None
    root = Path(repo.working_tree_dir or index).resolve()
    sub = index.relative_to(root).as_posix()
    sub = "" if sub == "." else sub
    if not sub and not (root / "models").is_dir() and (root / "index" / "models").is_dir():
        sub = "index"
    return IndexLocation(root, sub)


# --- uploads --------------------------------------------------------------------------


def zenodo_token(explicit: str | None, settings: Settings | None, token_file: Path | None,
                 environ: Mapping[str, str] | None = None) -> str:
    """The Zenodo token: explicit > settings (``SYNTHMED_ZENODO_TOKEN``) > the environment >
    a token file (``--zenodo-token-file``, ``SYNTHMED_ZENODO_TOKEN_FILE`` or
    ``~/.config/synthmed/zenodo-token``)."""
    if explicit:
        return explicit
    if settings is not None and settings.sources.zenodo_token:
        return settings.sources.zenodo_token
    env = zenodo_token_sources(environ)
    if env.token:
        return env.token
    candidates = [token_file] if token_file else []
    if env.token_file:
        candidates.append(env.token_file)
    candidates.append(env.default_token_file)
    for c in candidates:
        if c and c.is_file():
            text = c.read_text("utf-8").strip()
            if text:
                return text
    raise ContributeError("no Zenodo token: uploading to Zenodo needs a personal access token",
                          hint=f"set {TOKEN_ENV}, or write the token into a file and pass --zenodo-token-file "
                               "(or put it in ~/.config/synthmed/zenodo-token)")


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def zenodo_metadata(record: Mapping[str, Any], upload_type: str = "software") -> dict[str, Any]:
    creators = [{"name": a["name"], **({"affiliation": a["affiliation"]} if a.get("affiliation") else {})}
                for a in record.get("authors") or []] or [{"name": "synthmed contributor"}]
    return {"metadata": {
        "title": f"{record.get('title', record['id'])} ({record['id']} {record['version']})",
        "upload_type": upload_type,
        "description": str(record.get("description") or record.get("summary") or record["id"]),
        "creators": creators,
        "version": record["version"],
        "keywords": ["synthmed", "generative model" if upload_type == "software" else "synthetic dataset",
                     *[str(x) for x in record.get("modality", [])]],
    }}


def upload_zenodo(zip_path: Path, record: Mapping[str, Any], *, host: str, token: str,
                  upload_type: str = "software") -> str:
    """Create a deposition, upload the file (a model's zip, a dataset's tar) to its bucket,
    publish; ``zenodo:<record-id>/<file>``."""
    import requests
    from zenodo_client import Zenodo

    z = Zenodo(access_token=token)
    base = host.rstrip("/")
    z.base = base
    z.api_base = base + "/api"
    z.depositions_base = z.api_base + "/deposit/depositions"
    try:
        res = z.create(zenodo_metadata(record, upload_type), [str(zip_path)], publish=False)
        dep = res.json()
        pub = z.publish(str(dep["id"]), sleep=False).json()
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ContributeError(f"uploading {zip_path.name} to Zenodo at {z.api_base} failed: "
                              f"{_redact(f'{type(exc).__name__}: {exc}', token)}",
                              hint="check the Zenodo host (--zenodo-host / SYNTHMED_ZENODO_HOST) and that the token "
                                   "may create depositions (scope deposit:write, deposit:actions)") from None
    record_id = pub.get("record_id") or pub.get("id") or dep["id"]
    return f"zenodo:{record_id}/{zip_path.name}"


def _run(cmd: list[str], cwd: Path, what: str, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=dict(env) if env else None)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ContributeError(f"{what} failed in {cwd} (exit {proc.returncode}):\n  {tail}",
                              hint="fix the DVC repository or remote named above, then run contribute again")
    return proc.stdout


def open_dvc_repo(dvc_repo: Path) -> tuple[Any, Path]:
    """``(git repo, working tree)`` of ``--dvc-repo``, or ContributeError when it is not a git
    repository with a ``.dvc`` folder and nothing staged (synthmed commits there). Checked
    before anything is zipped, and again when uploading."""
    import git

    try:
        repo = git.Repo(dvc_repo, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ContributeError(f"{dvc_repo}: not a git repository",
                              hint="pass --dvc-repo with a DVC-enabled git repository") from None
    root = Path(repo.working_tree_dir or dvc_repo)
    if not (root / ".dvc").is_dir():
        raise ContributeError(f"{root}: not a DVC repository (no .dvc folder)",
                              hint="run `dvc init` and `dvc remote add -d NAME URL` there first")
    if repo.is_dirty(index=True, working_tree=False):
        raise ContributeError(f"{root}: the DVC repository has staged changes; synthmed would commit them too",
                              hint="commit or unstage them first (`git -C ... status`)")
    return repo, root


def upload_dvc(zip_path: Path, model_id: str, version: str, *, dvc_repo: Path, remote: str | None,
               path: str | None, url: str | None) -> str:
    """Track the zip with DVC in ``dvc_repo``, commit, ``dvc push``; ``dvc:<url>#<path>@<rev>``."""
    repo, root = open_dvc_repo(dvc_repo)
    rel = path or f"artefacts/{model_id}/{version}.zip"
    target = root / rel
    if target.exists():
        raise ContributeError(f"{target} already exists in the DVC repository",
                              hint="pick another --dvc-path, or another version")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, target)
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["add", rel], root, "dvc add")
    to_add = [f"{rel}.dvc"]
    gi = (target.parent / ".gitignore")
    if gi.exists():
        to_add.append(gi.relative_to(root).as_posix())
    repo.index.add(to_add)
    repo.index.commit(f"Add {model_id} {version} artefact (synthmed contribute)")
    rev = repo.head.commit.hexsha
    _run(dvc + ["push", rel] + (["-r", remote] if remote else []), root, "dvc push")
    if url is None:
        try:
            url = next(iter(repo.remote("origin").urls))
        except (ValueError, StopIteration):
            url = str(root)
    return f"dvc:{url}#{rel}@{rev}"


def store_in_index(zip_path: Path, model_id: str, version: str, worktree: Path, loc: IndexLocation,
                   max_bytes: int, rel: str | None = None) -> tuple[str, str]:
    """Copy the artefact into the index's worktree at ``rel`` (default
    ``artefacts/<id>/<version>.zip``); (its ``index:`` source, its repository path)."""
    size = zip_path.stat().st_size
    if size > max_bytes:
        raise ContributeError(f"the artefact is {size} bytes; the index keeps artefacts of at most {max_bytes} bytes",
                              hint="use --store zenodo or --store dvc for large artefacts")
    rel = rel or f"artefacts/{model_id}/{version}.zip"
    dest = worktree / loc.rel(rel)
    if dest.exists():
        raise ContributeError(f"{loc.rel(rel)} already exists in the index", hint="contribute a new version")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, dest)
    return f"index:{rel}", loc.rel(rel)


# --- before anything is zipped --------------------------------------------------------


def check_store(store: str, *, settings: Settings | None = None, zenodo_token_value: str | None = None,
                zenodo_token_file: Path | None = None, dvc_repo: Path | None = None,
                zenodo_host: str | None = None) -> str | None:
    """The store's flags and credentials, checked before anything is zipped or tested:
    a Zenodo token that can be found (returned), a DVC repository that is a git repository
    with a ``.dvc`` folder and nothing staged."""
    if store not in STORES:
        raise ContributeError(f"unknown store {store!r}", hint=f"use one of {', '.join(STORES)}")
    if store == "zenodo":
        if zenodo_host is not None and not re.match(r"^https?://[^/\s]+", zenodo_host):
            raise ContributeError(f"--zenodo-host {zenodo_host!r} is not an http(s) URL",
                                  hint="pass the Zenodo server's base URL, e.g. https://zenodo.org or https://sandbox.zenodo.org")
        if zenodo_token_file is not None and not Path(zenodo_token_file).is_file():
            raise ContributeError(f"{zenodo_token_file}: Zenodo token file not found",
                                  hint="check the --zenodo-token-file path")
        return zenodo_token(zenodo_token_value, settings, zenodo_token_file)
    if store == "dvc":
        if dvc_repo is None:
            raise ContributeError("--store dvc needs --dvc-repo (a DVC-enabled git repository with a remote)")
        if not Path(dvc_repo).is_dir():
            raise ContributeError(f"{dvc_repo}: no such folder", hint="pass --dvc-repo with a DVC-enabled git repository")
        open_dvc_repo(dvc_repo)
    return None
