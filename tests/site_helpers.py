"""Helpers for the site, sync, daemon, federation and bundle tests (all under tmp_path)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import git

from synthmed.daemon.sync import SyncResult, sync_all
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def new_repo(path: Path) -> git.Repo:
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test")
        cw.set_value("user", "email", "test@example.org")
        cw.set_value("commit", "gpgsign", "false")
    (path / "README.md").write_text("index\n")
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "initial")
    return repo


def put_record(root: Path, data: dict[str, Any], subfolder: str = "") -> Path:
    index_dir = root / subfolder if subfolder else root
    path = index_dir / "models" / data["id"] / f"{data['version']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def unverified(make_record: Any, model_id: str, version: str = "1.0.0", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = make_record(**overrides)
    data["id"], data["version"] = model_id, version
    del data["package"]["artefact"]["sha256"]
    return data


def with_artefact(make_record: Any, root: Path, model_id: str, version: str = "1.0.0", subfolder: str = "",
                  content: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    """A verified record whose artefact is a small file in the index (an index: source)."""
    data: dict[str, Any] = make_record(**overrides)
    data["id"], data["version"] = model_id, version
    content = content if content is not None else f"weights of {model_id} {version}\n".encode() * 8
    rel = f"artefacts/{model_id}/{version}.bin"
    f = (root / subfolder / rel) if subfolder else root / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(content)
    data["package"]["artefact"] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content),
                                   "media_type": "application/octet-stream", "sources": [f"index:{rel}"]}
    return data


def commit(repo: git.Repo, message: str = "change") -> str:
    repo.git.add("-A")
    repo.git.commit("-q", "--allow-empty", "-m", message)
    return repo.head.commit.hexsha


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_site(home: Path, upstreams: Sequence[dict[str, Any]], **sections: dict[str, Any]) -> Settings:
    """Write a site.toml (``sections``: site=, mirror=, schedules=, sources=) and load it."""
    home.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for u in upstreams:
        lines.append("[[upstreams]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in u.items()]
        lines.append("")
    (home / "site.toml").write_text("\n".join(lines))
    return load_settings(home, {}, environ={})


def sync(settings: Settings, **kw: Any) -> list[SyncResult]:
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        return sync_all(settings, cat, **kw)


def catalog(settings: Settings) -> Catalog:
    return Catalog.open(settings.catalog_path, readonly=True)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
    env.update(extra)
    return env


def run_cli(args: Sequence[str], timeout: float = 120, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "synthmed.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=str(REPO_ROOT), **popen)


def ssh_key(tmp: Path, name: str) -> tuple[Path, str]:
    """A fresh ed25519 key: (private key path, public key text)."""
    key = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, (tmp / f"{name}.pub").read_text().strip()


def signed_commit(repo: git.Repo, key: Path, message: str = "signed change") -> str:
    repo.git.add("-A")
    repo.git.execute(["git", "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q",
                      "--allow-empty", "-S", "-m", message])
    return repo.head.commit.hexsha
