"""What a site serves to downstream sites: its store by sha256 and its accepted indexes over git.

- ``/store/blobs/sha256/<ab>/<rest>``: a blob of the store, as ``mirror:`` sources read it
  (``registry/artefacts/sources/mirror.py``). GET and HEAD (with ``Range``) only; a name that is not
  a sha256, or a blob the store does not hold, is 404. A downstream site hashes every byte
  itself, so a server can withhold a blob but never substitute one.
- ``/git/<upstream>``: the upstream's *accepted* commit over git's smart HTTP protocol
  (read-only: ``git-upload-pack``; ``git-receive-pack`` and the dumb protocol are refused).
  The mirror's refs are hidden except ``refs/synthmed/accepted``, which is advertised as
  ``refs/heads/main`` (and ``HEAD``), so ``synthmed init --upstream NAME=URL/git/UP#main:SUBFOLDER``
  follows what this site accepted, never what it merely fetched. ``upload-pack`` only
  hands out objects reachable from an advertised tip.

Both are behind the optional token (HTTP Basic password, any user name, or ``Bearer``), as are
all other pages unless ``--public-catalogue`` (:mod:`synthmed.serve.public`).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import io
import logging
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Iterable

from werkzeug.exceptions import BadRequest, Forbidden, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from synthmed.registry.settings import Settings
from synthmed.registry.artefacts.store import Store

log = logging.getLogger(__name__)

ACCEPTED_REF = b"refs/synthmed/accepted"
SERVED_BRANCH = b"refs/heads/main"
#: hide every ref of a mirror but the accepted one (for the advertisement and the wants alike)
_HIDE = ["-c", "uploadpack.hideRefs=refs", "-c", "uploadpack.hideRefs=!refs/synthmed/accepted",
         "-c", "uploadpack.allowTipSHA1InWant=false", "-c", "uploadpack.allowReachableSHA1InWant=false",
         "-c", "uploadpack.allowAnySHA1InWant=false"]
#: the most bytes of an upload-pack request (the client's wants and haves), compressed or not
MAX_REQUEST = 16 << 20
GIT_TIMEOUT_S = 600
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def check_token(request: Request, token: str | None) -> None:
    """Nothing to check without a token; else the Basic password or the Bearer token must match."""
    if token is None:
        return
    given = ""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            given = ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise _Unauthorized()


class _Unauthorized(Forbidden):
    code = 401
    description = "this site needs a token (HTTP Basic password or Bearer)"

    def get_headers(self, environ: object = None, scope: object = None) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("WWW-Authenticate", 'Basic realm="synthmed"')]


def serve_blob(request: Request, settings: Settings, ab: str, rest: str) -> Response:
    """One blob of the store: GET/HEAD with Range; anything else is refused."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
    sha = ab + rest
    if len(ab) != 2 or not _HEX64.match(sha):
        raise NotFound("not a blob name: blobs are addressed as blobs/sha256/<first 2>/<other 62> hex digits")
    path = Store(settings.store_dir).blob_path(sha)
    try:
        st = os.lstat(path)
    except OSError:
        raise NotFound(f"this site's store holds no blob {sha}") from None
    if not stat.S_ISREG(st.st_mode):  # a link or anything else in blobs/ is not served
        raise NotFound(f"this site's store holds no blob {sha}")
    resp = send_file(str(path), request.environ, mimetype="application/octet-stream", conditional=True,
                     etag=sha, max_age=31536000)
    resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return resp


def _mirror(settings: Settings, name: str) -> Path:
    if not _NAME.match(name) or name not in {u.name for u in settings.upstreams}:
        raise NotFound(f"this site serves no index {name!r}")
    repo = settings.upstreams_dir / name
    if not (repo / "synthmed-mirror").is_file():
        raise NotFound(f"the index {name!r} has not been synced on this site yet")
    return repo


def _git(repo: Path, args: list[str], stdin: bytes = b"") -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    cmd = ["git", *_HIDE, *args, "--", str(repo)]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=GIT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        log.warning("git upload-pack on %s timed out", repo)
        raise BadRequest("git took too long") from None
    if done.returncode != 0:
        log.warning("git %s on %s failed: %s", args[0], repo, done.stderr.decode(errors="replace").strip())
        raise BadRequest(done.stderr.decode(errors="replace").strip()[-500:] or "git upload-pack failed")
    return done.stdout


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def _pkt_lines(data: bytes) -> Iterable[bytes | None]:
    """pkt-line payloads (None for a flush packet)."""
    i = 0
    while i + 4 <= len(data):
        n = int(data[i:i + 4], 16)
        if n == 0:
            yield None
            i += 4
            continue
        yield data[i + 4:i + n]
        i += n


def advertisement(repo: Path) -> bytes | None:
    """The ref advertisement of ``repo`` with only the accepted commit, named ``refs/heads/main``
    and ``HEAD``; None when the mirror has no accepted commit yet."""
    raw = _git(repo, ["upload-pack", "--strict", "--stateless-rpc", "--advertise-refs"])
    sha = caps = None
    for line in _pkt_lines(raw):
        if line is None:
            continue
        head, _, cap = line.rstrip(b"\n").partition(b"\0")
        if cap:
            caps = cap
        obj, _, ref = head.partition(b" ")
        if ref == ACCEPTED_REF:
            sha = obj
    if sha is None or caps is None:
        return None
    kept = b" ".join(c for c in caps.split() if not c.startswith(b"symref="))
    kept += b" symref=HEAD:" + SERVED_BRANCH
    return (_pkt(sha + b" HEAD\0" + kept + b"\n") + _pkt(sha + b" " + SERVED_BRANCH + b"\n") + b"0000")


def serve_git(request: Request, settings: Settings, name: str, what: str) -> Response:
    """``info/refs?service=git-upload-pack`` (GET) and ``git-upload-pack`` (POST); nothing else."""
    repo = _mirror(settings, name)
    if what == "info/refs":
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
        service = request.args.get("service")
        if service != "git-upload-pack":
            raise Forbidden("only git's smart HTTP protocol for fetching is served (service=git-upload-pack)")
        adv = advertisement(repo)
        if adv is None:
            raise NotFound(f"the index {name!r} has no accepted commit on this site yet")
        body = _pkt(b"# service=git-upload-pack\n") + b"0000" + adv
        return Response(body, mimetype="application/x-git-upload-pack-advertisement",
                        headers={"Cache-Control": "no-cache"})
    if what == "git-upload-pack":
        if request.method != "POST":
            raise MethodNotAllowed(valid_methods=["POST"])
        if request.content_length is not None and request.content_length > MAX_REQUEST:
            raise RequestEntityTooLarge()
        data = request.stream.read(MAX_REQUEST + 1)
        if len(data) > MAX_REQUEST:
            raise RequestEntityTooLarge()
        if request.headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            try:
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                    data = gz.read(MAX_REQUEST + 1)
            except (OSError, EOFError):
                raise BadRequest("the request body is not valid gzip") from None
            if len(data) > MAX_REQUEST:
                raise RequestEntityTooLarge()
        out = _git(repo, ["upload-pack", "--strict", "--stateless-rpc"], stdin=data)
        return Response(out, mimetype="application/x-git-upload-pack-result", headers={"Cache-Control": "no-cache"})
    raise Forbidden("only git's smart HTTP protocol for fetching is served (no receive-pack, no dumb HTTP)")
