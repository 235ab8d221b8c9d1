"""The one check of what names and locates an upstream: name, URL, branch, subfolder.

Every way an upstream enters a site goes through here before anything is written or run:
``synthmed init --upstream``, ``site.toml`` (:mod:`settings`), the daemon's git calls
(:mod:`synthmed.daemon.upstreams`) and the manifest of an imported bundle
(:mod:`synthmed.daemon.bundle`). An upstream's name becomes a folder under
``<site>/upstreams/`` and its URL and branch reach ``git fetch``, so both are checked
against strict allow-lists rather than for known-bad shapes.

Each check raises :class:`ConfigError` naming the value (credentials redacted), where it
came from (``where``: a flag, a file and table, a manifest field) and what to do.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import redact_url as redact_url  # the one redaction (registry/redact.py), re-exported

#: an upstream name: also a folder name under ``upstreams/`` and part of file names there
#: (``<name>.state.json``, ``<name>.allowed_signers``), so no '.', no '/', ASCII only
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
NAME_RULE = "1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit"

#: URL schemes git may be given; anything else (``ext::``, ``fd::``, other helpers) is refused
URL_SCHEMES = ("https", "http", "ssh", "git", "file")
#: the folders synthmed keeps inside a site (an upstream URL may not point into them)
SITE_FOLDERS = ("upstreams", "store", "packages", "envs", "reports")
#: the URL of an upstream that only ``synthmed import`` updates (see docs/sites.md)
BUNDLE_URL = "bundle:"

_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._~%+-]*")
_SCP_RE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)", re.S)
_TRANSPORT_HELPER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_BRANCH_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
_HEX_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

URL_FORMS = ("https://HOST/PATH, http://HOST/PATH, ssh://[USER@]HOST/PATH, git://HOST/PATH, file:///ABS/PATH, "
             "USER@HOST:PATH, or a local folder")


def _shown(value: str, limit: int = 80) -> str:
    """A value for a message: repr (so control characters show), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _bad_char(value: str) -> str | None:
    """The first control, format (bidi, zero-width) or separator character, named."""
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Zl", "Zp") or (cat == "Zs" and ch != " "):
            return f"U+{ord(ch):04X} ({unicodedata.name(ch, cat)})"
    return None


def check_name(name: object, where: str) -> str:
    """An upstream name: ``^[a-z0-9][a-z0-9_-]{0,31}$`` exactly (ASCII; no '.', '/', '..')."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = _shown(name) if isinstance(name, str) else type(name).__name__
        why = ""
        if isinstance(name, str):
            if "/" in name or "\\" in name or name.startswith(".") or ".." in name:
                why = " (a path: names are single folder names)"
            elif any(ord(c) > 127 for c in name):
                why = " (non-ASCII characters, e.g. look-alike letters)"
            elif _bad_char(name) or name != name.strip():
                why = " (control characters or whitespace)"
            elif len(name) > 32:
                why = f" ({len(name)} characters)"
        raise ConfigError(f"{where}: {shown} is not a valid upstream name{why}",
                          hint=f"an upstream name is {NAME_RULE}, e.g. 'public'")
    return name


def check_branch(branch: object, where: str) -> str:
    """A branch name git accepts and that cannot change the refspec or act as an option."""
    ok = isinstance(branch, str) and 0 < len(branch) <= 255 and not branch.endswith(".lock") and all(
        _BRANCH_PART_RE.fullmatch(part) for part in branch.split("/")) and ".." not in branch
    if not ok:
        shown = _shown(branch) if isinstance(branch, str) else type(branch).__name__
        raise ConfigError(f"{where}: {shown} is not an acceptable branch name",
                          hint="use a plain branch name such as 'main' or 'release/2026' (ASCII letters, digits, "
                               "'.', '_', '+', '-', '/' between parts; no '..', no leading '-' or '.')")
    return str(branch)


def check_subfolder(sub: object, where: str) -> str:
    """A relative folder inside the index repository ('' = the root); returned without slashes."""
    if not isinstance(sub, str):
        raise ConfigError(f"{where}: subfolder must be a string, not {type(sub).__name__}",
                          hint="use a relative folder inside the index repository, e.g. 'index' ('' = the root)")
    bad = _bad_char(sub)
    stripped = sub.strip("/")
    parts = stripped.split("/") if stripped else []
    if sub.startswith("/") or "\\" in sub or bad or any(p in ("", ".", "..") for p in parts) \
            or any(p.startswith("-") for p in parts) or len(sub) > 255:
        raise ConfigError(f"{where}: subfolder {_shown(sub)} leaves the repository or is not a plain folder"
                          + (f" (it holds {bad})" if bad else ""),
                          hint="use a relative folder inside the index repository, e.g. 'index' ('' = the root); "
                               "no leading '/', no '..'")
    return stripped


def is_network_url(url: str) -> bool:
    """Whether git would reach another machine for this (already checked) URL."""
    if url == BUNDLE_URL:
        return False
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("https", "http", "ssh", "git"):
        return True
    return not scheme and not url.startswith(("/", ".", "~")) and _SCP_RE.fullmatch(url) is not None \
        and "/" not in url.split(":", 1)[0]


def local_path(url: str, site_home: Path | None = None) -> Path | None:
    """The folder a local URL (path or file://) names, made absolute; None for a network URL."""
    if url == BUNDLE_URL or is_network_url(url):
        return None
    raw = url[len("file://"):] if url.startswith("file://") else url
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = (site_home / p) if site_home is not None else p.absolute()
    return Path(*p.parts)


def check_url(url: object, where: str, *, site_home: Path | None = None) -> str:
    """An upstream URL git may be given; see :data:`URL_FORMS`.

    Refused: anything starting with '-' (git would read it as an option), control, format
    or line-separator characters, transport helpers (``ext::``, ``fd::``, ``X::``), other
    schemes, hosts or users starting with '-', and (given ``site_home``) a local path or
    ``file://`` URL inside the site's own folder.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: the upstream URL is missing or not a string",
                          hint=f"give the index repository's git URL: {URL_FORMS}")
    shown = _shown(redact_url(url))

    def refuse(why: str, hint: str = f"give the index repository's git URL: {URL_FORMS}") -> ConfigError:
        return ConfigError(f"{where}: upstream URL {shown} is refused: {why}", hint=hint)

    if len(url) > 4096:
        raise refuse(f"{len(url)} characters is too long")
    bad = _bad_char(url)
    if bad:
        raise refuse(f"it holds {bad}")
    if url != url.strip():
        raise refuse("leading or trailing whitespace")
    if url.startswith("-"):
        raise refuse("it starts with '-', so git would read it as an option")
    if url == BUNDLE_URL:
        return url
    if _TRANSPORT_HELPER_RE.match(url):
        raise refuse("git transport helpers (TRANSPORT::ADDRESS, e.g. ext::) run programs and are not allowed")
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme not in URL_SCHEMES:
            raise refuse(f"the scheme {scheme!r} is not one of {', '.join(URL_SCHEMES)} (lower case)")
        if scheme == "file":
            if not rest.startswith("/"):
                raise refuse("a file:// URL must name an absolute path (file:///path/to/index)")
        else:
            try:
                parts = urlsplit(url)
                host, user = parts.hostname, parts.username
                _ = parts.port
            except ValueError as exc:
                raise refuse(f"it cannot be parsed ({exc})") from None
            hostport = parts.netloc.rpartition("@")[2]
            hostpart = hostport[:hostport.find("]") + 1] if hostport.startswith("[") else hostport.split(":", 1)[0]
            if not host or not _HOST_RE.fullmatch(hostpart):
                raise refuse("the host is missing or not a plain host name or address")
            if user is not None and not _USER_RE.fullmatch(user):
                raise refuse("the user name is not plain (it must not start with '-')")
    elif not url.startswith(("/", ".", "~")) and ":" in url.split("/", 1)[0]:
        m = _SCP_RE.fullmatch(url)  # git's scp-like form USER@HOST:PATH
        if m is None or not _HOST_RE.fullmatch(m.group("host")) or \
                (m.group("user") is not None and not _USER_RE.fullmatch(m.group("user"))):
            raise refuse("not a plain USER@HOST:PATH (the user and host must not start with '-')")
    if site_home is not None:
        p = local_path(url, site_home)
        if p is not None:
            home = Path(site_home).expanduser().absolute()
            try:
                target, own = p.resolve(), [home.resolve() / d for d in SITE_FOLDERS]
            except OSError:  # pragma: no cover - a loop of links
                target, own = p, []
            if target == home.resolve() or any(target == d or d in target.parents for d in own):
                raise refuse(f"it points at the site {home} itself or into one of its own folders",
                             hint="an upstream is an index repository of its own; give its path, not the site's")
    return url


def check_commit(sha: object, where: str) -> str:
    """A full git object id (40 or 64 lower-case hex digits)."""
    if not isinstance(sha, str) or not _HEX_RE.fullmatch(sha):
        raise ConfigError(f"{where}: {_shown(str(sha))} is not a full commit id",
                          hint="a commit id is 40 (or 64) lower-case hexadecimal digits")
    return sha


def check_signer(line: object, where: str) -> str:
    """One allowed-signers line: text on one line."""
    if not isinstance(line, str) or not line.strip() or _bad_char(line) or len(line) > 16384:
        raise ConfigError(f"{where}: not a single allowed-signers line",
                          hint='use git\'s format: PRINCIPAL [options] KEYTYPE KEY, one entry per string')
    return line
