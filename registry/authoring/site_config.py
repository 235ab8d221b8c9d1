"""Writing site.toml: ``synthmed init`` and upstreams added by ``synthmed import``.

Reading and validating site.toml lives in :mod:`settings`; this module writes a commented
file and appends upstreams without disturbing the admin's comments.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_path
from ..errors import ConfigError
from ..settings import SITE_FILE, Upstream, read_site_toml
from ..upstream_check import check_branch, check_name, check_subfolder, check_url, redact_url

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class UpstreamSpec:
    name: str
    url: str
    branch: str | None = None
    subfolder: str | None = None


def parse_upstream_spec(text: str) -> UpstreamSpec:
    """``NAME=URL``, ``NAME=URL#BRANCH``, ``NAME=URL#BRANCH:SUBFOLDER`` or ``NAME=URL#:SUBFOLDER``."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise ConfigError(f"--upstream {redact_url(text)!r}: expected NAME=URL[#BRANCH[:SUBFOLDER]]",
                          hint="e.g. --upstream public=https://github.com/org/index.git#main:index")
    check_name(name, "--upstream NAME=URL")
    url, hash_, frag = rest.strip().rpartition("#") if "#" in rest else (rest.strip(), "", "")
    branch: str | None = None
    sub: str | None = None
    if hash_:
        b, colon, s = frag.partition(":")
        branch = b or None
        sub = s.strip("/") if colon else None
    where = f"--upstream {name!r}"
    check_url(url, f"{where}, URL")
    if branch is not None:
        check_branch(branch, f"{where}, BRANCH")
    if sub is not None:
        check_subfolder(sub, f"{where}, SUBFOLDER")
    return UpstreamSpec(name, url, branch, sub)


def _git_default(url: str) -> tuple[str | None, str | None]:
    """For a local repository: its current branch, and 'index' when models/ lives there."""
    p = Path(url.removeprefix("file://")).expanduser()
    if not p.exists():
        return None, None
    try:
        import git

        repo = git.Repo(p)
        try:
            branch = repo.active_branch.name if not repo.head.is_detached else None
        except TypeError:
            branch = None
        tree = repo.head.commit.tree
        names = {t.name for t in tree.trees}
        sub = None
        if "models" not in names and "index" in names and "models" in {t.name for t in (tree / "index").trees}:
            sub = "index"
        repo.close()
        return branch, sub
    except Exception:  # not a repository, or an empty one: keep the defaults
        return None, None


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is JSON-compatible for plain text


def upstream_toml(u: Upstream, comment: str | None = None) -> str:
    lines = ["", "[[upstreams]]"]
    if comment:  # one line, whatever it quotes (a folder name may hold a newline)
        lines.insert(1, "# " + "".join(c if c.isprintable() else "?" for c in comment))
    lines += [f"name = {_q(u.name)}", f"url = {_q(u.url)}", f"branch = {_q(u.branch)}",
              f"subfolder = {_q(u.subfolder)}              # folder holding models/ ('' = the repository root)",
              f"priority = {u.priority}                   # bare ids resolve by priority: lower first",
              f"require_signed = {'true' if u.require_signed else 'false'}"
              "            # true: only commits signed by a key in allowed_signers are accepted"]
    if u.allowed_signers:
        lines.append("allowed_signers = [" + ", ".join(_q(s) for s in u.allowed_signers) + "]")
    else:
        lines.append('# allowed_signers = ["maintainer@example.org namespaces=\\"git\\" ssh-ed25519 AAAA..."]')
    lines.append(f"allow_code = {'true' if u.allow_code else 'false'}"
                 "                # false: search and mirror its models, never run their code here")
    if u.file_roots is not None:
        lines.append("file_roots = [" + ", ".join(_q(r) for r in u.file_roots) + "]")
    else:
        lines.append("# file_roots = []                # folders its records' file:// sources may read "
                     "(default: none for a network upstream, its own folder for a local one)")
    return "\n".join(lines) + "\n"


_HEADER = """\
# synthmed site configuration. Reference: docs/sites.md.
# Precedence: command-line flag > environment (SYNTHMED_*) > this file > defaults.

[site]
name = {name}
stale_after_hours = 48           # warn when an upstream's last successful sync is older
# offline = false                # true: never reach the network for artefacts

[mirror]
policy = "all"                   # all | none | select
# modalities = ["CT", "MRI"]     # with policy = "select": any match selects a model
# anatomies = ["lung"]
# ids = ["ihc-patch-dcgan"]

[schedules]
sync_interval_minutes = 60
nightly_test_time = "02:30"      # HH:MM, local time
scrub_interval_hours = 168
gc_interval_hours = 24

[sources]
# zenodo_host = "https://zenodo.org"          # or an internal proxy of it
# mirrors = ["https://synthmed.other-site.example/store"]  # other sites' stores (`synthmed serve`'s /store), tried first
# [sources.dvc]
# remote_url = "s3://bucket/dvc-store"        # replaces the repositories' default DVC remote
# [sources.dvc.config]
# endpointurl = "https://minio.hospital.example"
# [sources.http]
# connect_timeout_s = 10
# read_timeout_s = 30
# retries = 3

# [runner]
# device = "auto"                # auto | cpu | cuda | cuda:N
# mode = "auto"                  # auto | inline | worker
# batch_size = 32

# [output]
# png_compress_level = 1         # zlib 0 (fastest) .. 9 (smallest)
# writers = 2                    # writer threads (default: one per core; 0: none)
"""


def render_site_toml(upstreams: Sequence[Upstream], name: str = "synthmed-site") -> str:
    text = _HEADER.format(name=_q(name))
    if not upstreams:
        text += "\n# [[upstreams]]\n# name = \"public\"\n# url = \"https://github.com/ORG/INDEX.git\"\n"
    for u in upstreams:
        text += upstream_toml(u)
    return text


def init_site(home: Path, specs: Sequence[UpstreamSpec], *, name: str | None = None, force: bool = False,
              branch: str | None = None, subfolder: str | None = None) -> Path:
    """Create the site folder and a commented site.toml (refusing to overwrite one)."""
    path = home / SITE_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", hint="edit it, or pass --force to overwrite it")
    seen: set[str] = set()
    ups = []
    for i, s in enumerate(specs):
        where = f"--upstream {check_name(s.name, '--upstream NAME=URL')!r}"
        check_url(s.url, f"{where}, URL", site_home=home)  # before any git call or file: the URL may be hostile
        if s.name in seen:
            raise ConfigError(f"--upstream {s.name!r} is given twice", hint="give each upstream its own name")
        seen.add(s.name)
        git_branch, git_sub = _git_default(s.url)
        b = s.branch or branch or git_branch or "main"
        sub = s.subfolder if s.subfolder is not None else (subfolder if subfolder is not None else (git_sub or ""))
        if git_sub and s.subfolder is None and subfolder is None:
            log.warning("upstream %s: the repository keeps its records under %s/models/; using subfolder %r",
                        s.name, git_sub, git_sub)
        check_branch(b, f"{where}, branch")
        sub = check_subfolder(sub, f"{where}, subfolder")
        if "://" not in s.url and not s.url.startswith("git@") and not Path(s.url).expanduser().exists():
            log.warning("upstream %s: %s does not exist (yet); `synthmed sync` fails until it does", s.name, s.url)
        ups.append(Upstream(name=s.name, url=s.url, branch=b, subfolder=sub.strip("/"), priority=10 * (i + 1)))
    if home.exists() and not home.is_dir():
        raise ConfigError(f"cannot create a site at {home}: it is a file, not a folder",
                          hint="pick a new folder (or an existing site folder) for the site")
    try:
        home.mkdir(parents=True, exist_ok=True)
        for d in ("upstreams", "store", "packages", "envs", "reports"):
            (home / d).mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create a site at {home}: {exc.strerror or exc} ({exc.filename})",
                          hint="pick a folder you can write to") from exc
    text = render_site_toml(ups, name or home.name or "synthmed-site")
    with atomic_path(path, tmp=path.with_suffix(".toml.tmp")) as tmp:
        tmp.write_text(text)
        read_site_toml(tmp)  # what we write must validate
    return path


def append_upstream(home: Path, u: Upstream, comment: str) -> None:
    """Add one ``[[upstreams]]`` table at the end of site.toml (keeping everything else)."""
    path = home / SITE_FILE
    old = path.read_text() if path.exists() else render_site_toml([], home.name)
    text = old.rstrip("\n") + "\n" + upstream_toml(u, comment)
    with atomic_path(path, tmp=path.with_suffix(".toml.tmp")) as tmp:
        tmp.write_text(text)
        read_site_toml(tmp)
