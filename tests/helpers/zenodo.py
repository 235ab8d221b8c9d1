"""A small emulator of Zenodo's REST API on 127.0.0.1, enough for zenodo-client and for
synthmed's own downloads and deposits.

Implemented (as Zenodo answers them, trimmed to the fields clients use):

- ``GET  /api/records/<id>``: published record, ``files[]`` with ``key``, ``size``,
  ``checksum`` ("md5:..."), ``links.self`` (download), plus ``links.latest``
- ``GET  /api/records/<id>/files/<key>/content`` (and ``/records/<id>/files/<key>``):
  the file, with ``Range`` support
- ``POST /api/deposit/depositions``: a new draft with ``links.bucket``
- ``PUT  /api/files/<bucket>/<filename>``: upload a file to a draft's bucket
- ``GET|PUT /api/deposit/depositions/<id>``: read / update a draft's metadata
- ``POST /api/deposit/depositions/<id>/actions/{publish,edit,discard,newversion}``
- ``GET  /api/deposit/depositions``: the token owner's depositions

Authentication: ``?access_token=`` or ``Authorization: Bearer``. Deposit endpoints need a
valid token; record reads are public, but an invalid token is refused (401) as Zenodo does.
Tests can tamper with a published file (same size) to check that clients verify hashes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REQUIRED_METADATA = ("title", "upload_type", "description", "creators")


@dataclass
class Deposition:
    id: int
    conceptrecid: int
    owner: str
    bucket: str
    metadata: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    submitted: bool = False
    editing: bool = False
    latest_draft: int | None = None


class ZenodoEmulator:
    """``with ZenodoEmulator(tokens={"tok"}) as z: z.base  # http://127.0.0.1:PORT``"""

    def __init__(self, tokens: set[str] | None = None) -> None:
        self.tokens = set(tokens or {"test-token"})
        self.lock = threading.Lock()
        self.depositions: dict[int, Deposition] = {}
        self.buckets: dict[str, int] = {}
        #: published records: id -> (deposition snapshot)
        self.records: dict[int, Deposition] = {}
        self.tampered: set[tuple[int, str]] = set()
        #: (record id, key) -> a download link to announce instead of the emulator's own
        self.links: dict[tuple[int, str], str] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._next = 1000
        emu = self

        class Handler(_Handler):
            emulator = emu

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ZenodoEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    # -- helpers for tests -------------------------------------------------------------
    def new_id(self) -> int:
        with self.lock:
            self._next += 1
            return self._next

    def publish_record(self, files: dict[str, bytes], metadata: dict[str, Any] | None = None,
                       owner: str | None = None) -> int:
        """Create and publish a record directly; returns its id."""
        rid = self.new_id()
        md = {"title": "test record", "upload_type": "software", "description": "d",
              "creators": [{"name": "Tester"}], "version": "1", **(metadata or {})}
        dep = Deposition(rid, rid, owner or next(iter(self.tokens)), uuid.uuid4().hex, md, dict(files), submitted=True)
        with self.lock:
            self.depositions[rid] = dep
            self.records[rid] = copy.deepcopy(dep)
        return rid

    def link_file(self, record_id: int, key: str, url: str) -> None:
        """Announce ``url`` (another host, say) as the file's download link."""
        with self.lock:
            self.links[(int(record_id), key)] = url

    def tamper(self, record_id: int, key: str) -> None:
        """Serve the file with one byte flipped (same size)."""
        with self.lock:
            self.tampered.add((int(record_id), key))

    # -- JSON views ----------------------------------------------------------------------
    def file_json(self, rid: int, key: str, data: bytes, published: bool, bucket: str = "") -> dict[str, Any]:
        link = (f"{self.base}/api/records/{rid}/files/{key}/content" if published
                else f"{self.base}/api/files/{bucket}/{key}")
        if published:
            link = self.links.get((rid, key), link)
        return {"id": hashlib.md5(f"{rid}/{key}".encode()).hexdigest(), "key": key, "filename": key,
                "size": len(data), "filesize": len(data), "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                "links": {"self": link, "content": link if published else link, "download": link}}

    def deposition_json(self, d: Deposition) -> dict[str, Any]:
        b = self.base
        doi = f"10.5072/zenodo.{d.id}" if d.submitted else ""
        links = {"self": f"{b}/api/deposit/depositions/{d.id}", "bucket": f"{b}/api/files/{d.bucket}",
                 "publish": f"{b}/api/deposit/depositions/{d.id}/actions/publish",
                 "edit": f"{b}/api/deposit/depositions/{d.id}/actions/edit",
                 "discard": f"{b}/api/deposit/depositions/{d.id}/actions/discard",
                 "newversion": f"{b}/api/deposit/depositions/{d.id}/actions/newversion",
                 "html": f"{b}/deposit/{d.id}",
                 "latest_draft": f"{b}/api/deposit/depositions/{d.latest_draft or d.id}",
                 "record": f"{b}/api/records/{d.id}", "latest_html": f"{b}/records/{d.id}"}
        return {"id": d.id, "record_id": d.id, "conceptrecid": str(d.conceptrecid), "doi": doi,
                "submitted": d.submitted, "state": "done" if d.submitted and not d.editing else "unsubmitted",
                "metadata": {**d.metadata, **({"doi": doi} if doi else {})},
                "files": [self.file_json(d.id, k, v, d.submitted, d.bucket) for k, v in d.files.items()],
                "links": links}

    def record_json(self, r: Deposition) -> dict[str, Any]:
        b = self.base
        latest = max((x.id for x in self.records.values() if x.conceptrecid == r.conceptrecid), default=r.id)
        return {"id": r.id, "recid": str(r.id), "conceptrecid": str(r.conceptrecid), "doi": f"10.5072/zenodo.{r.id}",
                "metadata": dict(r.metadata), "files": [self.file_json(r.id, k, v, True) for k, v in r.files.items()],
                "links": {"self": f"{b}/api/records/{r.id}", "html": f"{b}/records/{r.id}",
                          "latest": f"{b}/api/records/{latest}/versions/latest", "latest_html": f"{b}/records/{latest}"}}


class _Handler(BaseHTTPRequestHandler):
    emulator: ZenodoEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    # -- plumbing ------------------------------------------------------------------------
    def _token(self) -> str | None:
        q = parse_qs(urlsplit(self.path).query)
        if q.get("access_token"):
            return q["access_token"][0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        return None

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._json(status, {"status": status, "message": message, **extra})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline().strip()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _auth(self, required: bool) -> tuple[bool, str | None]:
        tok = self._token()
        if tok is None:
            if required:
                self._error(401, "The server could not verify that you are authorized to access the URL requested.")
                return False, None
            return True, None
        if tok not in self.emulator.tokens:
            self._error(401, "The server could not verify that you are authorized to access the URL requested.")
            return False, None
        return True, tok

    def _dispatch(self, method: str) -> None:
        emu = self.emulator
        path = unquote(urlsplit(self.path).path)
        with emu.lock:
            emu.requests.append((method, path, dict(self.headers.items())))
        body = self._body() if method in ("POST", "PUT") else b""
        for pattern, handler in _ROUTES:
            m = re.fullmatch(pattern[1], path)
            if m and pattern[0] == method:
                handler(self, body, *m.groups())
                return
        self._error(404, "The requested URL was not found on the server.")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- records -----------------------------------------------------------------------
    def get_record(self, body: bytes, rid: str) -> None:
        ok, _ = self._auth(required=False)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            rec = emu.records.get(int(rid))
            data = emu.record_json(rec) if rec else None
        if data is None:
            self._error(404, "PID does not exist.")
            return
        self._json(200, data)

    def get_file(self, body: bytes, rid: str, key: str) -> None:
        ok, _ = self._auth(required=False)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            rec = emu.records.get(int(rid))
            data = rec.files.get(key) if rec else None
            tampered = (int(rid), key) in emu.tampered
        if data is None:
            self._error(404, "File not found.")
            return
        if tampered and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    # -- depositions -----------------------------------------------------------------------
    def _own(self, tok: str | None, did: str) -> Deposition | None:
        d = self.emulator.depositions.get(int(did))
        if d is None:
            self._error(404, "PID does not exist.")
            return None
        if d.owner != tok:
            self._error(403, "You do not have permission to access this deposition.")
            return None
        return d

    def create_deposition(self, body: bytes) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            self._error(400, "Could not parse JSON.")
            return
        emu = self.emulator
        did = emu.new_id()
        d = Deposition(did, did, str(tok), uuid.uuid4().hex, dict(payload.get("metadata") or {}))
        with emu.lock:
            emu.depositions[did] = d
            emu.buckets[d.bucket] = did
            out = emu.deposition_json(d)
        self._json(201, out)

    def list_depositions(self, body: bytes) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            out = [emu.deposition_json(d) for d in emu.depositions.values() if d.owner == tok]
        self._json(200, out)

    def get_deposition(self, body: bytes, did: str) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            d = self._own(tok, did)
            if d is None:
                return
            out = emu.deposition_json(d)
        self._json(200, out)

    def put_deposition(self, body: bytes, did: str) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            d = self._own(tok, did)
            if d is None:
                return
            if d.submitted and not d.editing:
                self._error(400, "Deposition is published; use actions/edit first.")
                return
            d.metadata = dict(json.loads(body or b"{}").get("metadata") or {})
            out = emu.deposition_json(d)
        self._json(200, out)

    def upload(self, body: bytes, bucket: str, filename: str) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            did = emu.buckets.get(bucket)
            d = emu.depositions.get(did) if did is not None else None
            if d is None:
                self._error(404, "Bucket does not exist.")
                return
            if d.owner != tok:
                self._error(403, "You do not have permission to write to this bucket.")
                return
            if d.submitted and not d.editing:
                self._error(403, "Bucket is locked (the deposition is published).")
                return
            d.files[filename] = body
            out = emu.file_json(d.id, filename, body, False, bucket)
        self._json(201, {**out, "mimetype": "application/octet-stream", "bucket": bucket})

    def action(self, body: bytes, did: str, action: str) -> None:
        ok, tok = self._auth(required=True)
        if not ok:
            return
        emu = self.emulator
        with emu.lock:
            d = self._own(tok, did)
            if d is None:
                return
            if action == "publish":
                missing = [k for k in REQUIRED_METADATA if not d.metadata.get(k)]
                if missing:
                    self._error(400, "Validation error.",
                                errors=[{"field": f"metadata.{k}", "message": "Field is required."} for k in missing])
                    return
                if not d.files:
                    self._error(400, "Validation error.", errors=[{"field": "files", "message": "Minimum one file must be provided."}])
                    return
                d.submitted, d.editing = True, False
                emu.records[d.id] = copy.deepcopy(d)
                self._json(202, emu.deposition_json(d))
            elif action == "edit":
                d.editing = True
                self._json(201, emu.deposition_json(d))
            elif action == "discard":
                if d.id in emu.records:
                    pub = emu.records[d.id]
                    d.metadata, d.files, d.editing = dict(pub.metadata), dict(pub.files), False
                self._json(201, emu.deposition_json(d))
            elif action == "newversion":
                if not d.submitted:
                    self._error(400, "Deposition must be published before a new version.")
                    return
                nid = emu._next = emu._next + 1
                nd = Deposition(nid, d.conceptrecid, d.owner, uuid.uuid4().hex, dict(d.metadata), dict(d.files))
                emu.depositions[nid] = nd
                emu.buckets[nd.bucket] = nid
                d.latest_draft = nid
                self._json(201, emu.deposition_json(d))
            else:
                self._error(404, f"unknown action {action}")


_ROUTES: list[tuple[tuple[str, str], Any]] = [
    (("GET", r"/api/records/(\d+)"), _Handler.get_record),
    (("GET", r"/api/records/(\d+)/files/([^/]+)/content"), _Handler.get_file),
    (("GET", r"/records/(\d+)/files/([^/]+)"), _Handler.get_file),
    (("GET", r"/api/deposit/depositions"), _Handler.list_depositions),
    (("POST", r"/api/deposit/depositions"), _Handler.create_deposition),
    (("GET", r"/api/deposit/depositions/(\d+)"), _Handler.get_deposition),
    (("PUT", r"/api/deposit/depositions/(\d+)"), _Handler.put_deposition),
    (("POST", r"/api/deposit/depositions/(\d+)/actions/(\w+)"), _Handler.action),
    (("PUT", r"/api/files/([0-9a-f]+)/([^/]+)"), _Handler.upload),
]
