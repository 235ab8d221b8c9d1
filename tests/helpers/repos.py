"""Git repositories for test indexes: created on branch main with a test identity and
signing off, committed with the git CLI (signed commits with a fresh ssh key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git


def init_repo(path: Path, readme: str = "index\n") -> git.Repo:
    """A new repository at ``path`` (branch main) with one commit holding README.md."""
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test")
        cw.set_value("user", "email", "test@example.org")
        cw.set_value("commit", "gpgsign", "false")
    (path / "README.md").write_text(readme)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "initial")
    return repo


def commit(repo: git.Repo, message: str = "change") -> str:
    """Commit everything in the working tree (an empty commit if nothing changed); the new sha."""
    repo.git.add("-A")
    repo.git.commit("-q", "--allow-empty", "-m", message)
    return repo.head.commit.hexsha


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
