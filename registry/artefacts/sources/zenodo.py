"""``zenodo:<record-id>/<file-name>`` sources.

The record is looked up through zenodo-client (on the host the site configures:
``sources.zenodo_host``); the file is then streamed through our own HTTP client, so it
is hashed and verified like any other download (zenodo-client checks nothing).

The site's token (``sources.zenodo_token``) is sent only to the configured Zenodo host
(same scheme, host and port as ``sources.zenodo_host``): a file link that names another
host is fetched without it, and a redirect never carries it to another origin.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from urllib.parse import urlsplit

from ...settings import Settings
from .base import Source, SourceStream, redact, source_error
from .http import HttpSource, _origin

log = logging.getLogger(__name__)

_ZENODO_URI = re.compile(r"^zenodo:(\d+)/(.+)$")
#: zenodo-client insists on a token even for public records; this one is never sent
DUMMY_TOKEN = "synthmed-anonymous"


def parse_zenodo_uri(uri: str) -> tuple[str, str]:
    m = _ZENODO_URI.match(uri)
    if not m:
        raise source_error(uri, "not a zenodo: URI", hint="write zenodo:<record-id>/<file-name>")
    return m.group(1), m.group(2)


def make_client(settings: Settings) -> Any:
    """A ``zenodo_client.Zenodo`` pointed at the site's Zenodo host."""
    from zenodo_client import Zenodo

    token = settings.sources.zenodo_token
    z = Zenodo(access_token=token or DUMMY_TOKEN)
    base = settings.sources.zenodo_host.rstrip("/")
    z.base = base
    z.api_base = base + "/api"
    z.depositions_base = z.api_base + "/deposit/depositions"
    return z


class ZenodoSource(Source):
    supports_range = True
    remote = True
    _offline_action = "asking Zenodo"
    _offline_hint = "configure a site mirror, or a local Zenodo proxy as sources.zenodo_host"

    def _parse(self, uri: str) -> None:
        self.record_id, self.name = parse_zenodo_uri(uri)
        self._http: HttpSource | None = None
        #: what Zenodo says about the file (size, checksum), after the look-up
        self.info: dict[str, Any] = {}

    def _remote_host(self) -> str | None:
        return urlsplit(self.settings.sources.zenodo_host).hostname

    def _lookup(self) -> HttpSource:
        if self._http is not None:
            return self._http
        import requests

        z = make_client(self.settings)
        token = self.settings.sources.zenodo_token
        try:
            res = z.get_record(self.record_id, authenticate=bool(token))
            data = res.json()
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise source_error(self.uri, f"Zenodo record {self.record_id} look-up on {z.api_base} failed: HTTP {code}",
                               hint="check the record id, the site's zenodo_host and token") from exc
        except (requests.RequestException, ValueError) as exc:
            raise source_error(self.uri, f"Zenodo record {self.record_id} look-up on {z.api_base} failed: {exc}",
                               hint="check the site's zenodo_host (a proxy or mirror) and the network") from exc
        files = data.get("files") or []
        match = [f for f in files if isinstance(f, dict) and f.get("key") == self.name]
        if not match:
            names = ", ".join(str(f.get("key")) for f in files if isinstance(f, dict)) or "none"
            raise source_error(self.uri, f"Zenodo record {self.record_id} has no file {self.name!r} (files: {names})",
                               hint="fix the file name in the record's sources")
        info = match[0]
        self.info = info
        links = info.get("links") or {}
        url = links.get("content") or links.get("self") or links.get("download")
        if not isinstance(url, str):
            raise source_error(self.uri, f"Zenodo record {self.record_id}: file {self.name!r} has no download link")
        http = HttpSource(url, self.ctx, self.sha256)
        if token:
            if _origin(url) == _origin(self.settings.sources.zenodo_host):
                http._add_origin_headers({"Authorization": f"Bearer {token}"})
            else:
                # the record names a file on another host: the token is for the configured
                # Zenodo host only, so the file is fetched without it (its bytes are hashed anyway)
                log.info("%s: the file link %s is not on the configured Zenodo host %s; fetching it without "
                         "the token", self.uri, redact(url), self.settings.sources.zenodo_host)
        self._http = http
        return http

    def _open(self, offset: int) -> SourceStream:
        http = self._lookup()
        # the file's own host is subject to the offline rule too; the limits and the wrapping
        # of errors are this source's own open's (the stream is not guarded twice)
        http._check_offline()
        return http._open(offset)
