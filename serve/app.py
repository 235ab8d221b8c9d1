"""``synthmed serve``: a read-only WSGI application over a site (werkzeug + jinja2, served by waitress).

Pages (server-rendered HTML, no JavaScript): ``/`` search with facets (and the published datasets that
match), ``/model/<upstream>/<id>[/<version>]``, ``/dataset/<upstream>/<id>[/<version>]`` with its item
thumbnails (:mod:`synthmed.serve.dataset_pages`),
``/status``, ``/tests/<id>/`` (a test run's HTML report), its sample grid and its PNG/JSON files
(found through the catalog's ``tests`` row, wherever the report was written; only the files the
run wrote), ``/health`` (JSON; 503 when the site is unhealthy, as ``synthmed status`` exits
non-zero). For downstream sites: ``/store/...`` and ``/git/<upstream>/...``
(:mod:`synthmed.serve.downstream`). With a token every URL needs it (``--public-catalogue``
opens the catalogue pages only: :mod:`synthmed.serve.public`); pages show no credentials and
no absolute paths of the machine.

Every request opens the catalog read-only (``mode=ro``) and closes it; the server never
writes the site, so it may run as a user that can only read it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from synthmed.daemon.status import site_status
from synthmed.registry import vocabulary
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ArtefactError, CatalogError, ConfigError, DatasetNotFound, ModelNotFound, SynthmedError
from synthmed.registry.settings import Settings

from . import dataset_pages, downstream, views
from .public import needs_token, public_text

log = logging.getLogger(__name__)

URLS = Map([
    Rule("/", endpoint="search"),
    Rule("/model/<upstream>/<model_id>", endpoint="model"),
    Rule("/model/<upstream>/<model_id>/<version>", endpoint="model"),
    Rule("/dataset/<upstream>/<dataset_id>", endpoint="dataset"),
    Rule("/dataset/<upstream>/<dataset_id>/<version>", endpoint="dataset"),
    Rule("/dataset/<upstream>/<dataset_id>/<version>/item/<int:index>.png", endpoint="dataset_item"),
    Rule("/dataset/<upstream>/<dataset_id>/<version>/item/<int:index>/<output>.png", endpoint="dataset_item"),
    Rule("/status", endpoint="status"),
    Rule("/health", endpoint="health"),
    Rule("/tests/<int:test_id>/", endpoint="report"),
    Rule("/tests/<int:test_id>/grid.png", endpoint="grid"),
    Rule("/tests/<int:test_id>/files/<path:rel>", endpoint="report_file"),
    Rule("/store/blobs/sha256/<ab>/<rest>", endpoint="blob"),
    Rule("/git/<name>/info/refs", endpoint="git_refs"),
    Rule("/git/<name>/<path:what>", endpoint="git"),
], strict_slashes=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
READ_METHODS = ("GET", "HEAD")


class SiteApp:
    """The WSGI application over one site's settings (built once at start-up)."""

    def __init__(self, settings: Settings, *, token: str | None = None, public_catalogue: bool = False,
                 status_fn: Callable[[Settings, Catalog | None], dict[str, Any]] | None = None) -> None:
        self.settings = settings
        self.token = token
        #: with a token: the catalogue pages (not status, health, store, git) open to anyone
        self.public_catalogue = public_catalogue
        self.status_fn = status_fn
        # every printed value passes public_text: no credentials, no absolute paths of the machine
        self.env = Environment(loader=PackageLoader("synthmed.serve", "templates"),
                               autoescape=select_autoescape(["html"]), finalize=public_text)
        self.env.globals["qs"] = lambda params: urlencode(params)
        self.env.globals["term_label"] = views.term_label
        self.env.globals["modalities"] = lambda terms: [views.term_label("modality", v)
                                                        for v in vocabulary.facet_modalities(terms or [])]
        # only web links become links: a record's javascript: or file: URL stays text
        self.env.filters["is_web"] = lambda url: isinstance(url, str) and url.startswith(("https://", "http://"))

    def render(self, name: str, status: int = 200, **ctx: Any) -> Response:
        html = self.env.get_template(name).render(site=self.settings, **ctx)
        return Response(html, status=status, mimetype="text/html")

    def _catalog(self) -> Catalog:
        return Catalog.open(self.settings.catalog_path, readonly=True)

    # -- pages ----------------------------------------------------------------------------

    def on_search(self, request: Request) -> Response:
        q = views.Query.from_args(request.args)
        with self._catalog() as cat:
            data = views.search(self.settings, cat, q)
            datasets = dataset_pages.dataset_rows(cat, q.text, q.modality, q.anatomy)
        return self.render("search.html", q=q, facet_names=views.FACETS, datasets=datasets, **data)

    def on_model(self, request: Request, upstream: str, model_id: str, version: str | None = None) -> Response:
        with self._catalog() as cat:
            try:
                data = views.model_page(self.settings, cat, upstream, model_id, version)
            except ModelNotFound as exc:
                raise NotFound(exc.message) from None
        return self.render("model.html", **data)

    def on_dataset(self, request: Request, upstream: str, dataset_id: str, version: str | None = None) -> Response:
        with self._catalog() as cat:
            try:
                data = dataset_pages.dataset_page(self.settings, cat, upstream, dataset_id, version)
            except DatasetNotFound as exc:
                raise NotFound(exc.message) from None
        return self.render("dataset.html", **data)

    def on_dataset_item(self, request: Request, upstream: str, dataset_id: str, version: str, index: int,
                        output: str | None = None) -> Response:
        with self._catalog() as cat:
            try:
                png = dataset_pages.thumbnail(self.settings, cat, upstream, dataset_id, version, index, output)
            except (DatasetNotFound, ArtefactError) as exc:  # not mirrored, no such item, a corrupt blob
                raise NotFound(exc.message) from None
        return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    def _status(self) -> dict[str, Any]:
        fn = self.status_fn or site_status
        try:
            cat: Catalog | None = self._catalog()
        except CatalogError:
            cat = None
        try:
            return fn(self.settings, cat)
        finally:
            if cat is not None:
                cat.close()

    def on_status(self, request: Request) -> Response:
        return self.render("status.html", st=self._status())

    def on_health(self, request: Request) -> Response:
        st = self._status()
        health = st.get("health") or {"ok": not st.get("warnings"), "problems": st.get("warnings", [])}
        return Response(json.dumps(health, default=str) + "\n", status=200 if health["ok"] else 503,
                        mimetype="application/json")

    def _report(self, test_id: int) -> views.RunReport:
        """A test run's report, found through the catalog's ``tests`` row only."""
        with self._catalog() as cat:
            report = views.RunReport.of(cat.tests.test_row(test_id))
        if report is None:
            raise NotFound(f"test run {test_id} has no report on this site")
        return report

    def on_report(self, request: Request, test_id: int) -> Response:
        report = self._report(test_id)
        doc = report.run()
        if doc is None:
            raise NotFound(f"test run {test_id}: its report.json is missing or unreadable")
        return self.render("report.html", test_id=test_id, run=report.run_dir.name, doc=doc)

    def _file(self, request: Request, path: Path | None) -> Response:
        if path is None:
            raise NotFound("no such report file")
        mime = "image/png" if path.suffix == ".png" else "application/json"
        return send_file(str(path), request.environ, mimetype=mime, conditional=True)

    def on_grid(self, request: Request, test_id: int) -> Response:
        report = self._report(test_id)
        grid = report.grid()
        return self._file(request, report.file(grid) if grid else None)

    def on_report_file(self, request: Request, test_id: int, rel: str) -> Response:
        return self._file(request, self._report(test_id).file(rel))

    def on_blob(self, request: Request, ab: str, rest: str) -> Response:
        return downstream.serve_blob(request, self.settings, ab, rest)

    def on_git_refs(self, request: Request, name: str) -> Response:
        return downstream.serve_git(request, self.settings, name, "info/refs")

    def on_git(self, request: Request, name: str, what: str) -> Response:
        return downstream.serve_git(request, self.settings, name, what)

    # -- WSGI -----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        adapter = URLS.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match(method=None)
            if needs_token(endpoint, has_token=self.token is not None, public_catalogue=self.public_catalogue):
                downstream.check_token(request, self.token)
            if request.method not in READ_METHODS and endpoint != "git":
                raise MethodNotAllowed(valid_methods=list(READ_METHODS))
            resp: Response = getattr(self, f"on_{endpoint}")(request, **values)
            return resp
        except RequestRedirect as exc:  # e.g. '//' merged: a relative Location, never a Location-less 308
            return _redirect(exc.new_url)
        except HTTPException as exc:
            if exc.code == 401:
                return exc.get_response(request.environ)  # type: ignore[return-value]
            return self.render("error.html", status=exc.code or 500, code=exc.code,
                               title=exc.name, message=exc.description)
        except CatalogError as exc:
            return self.render("error.html", status=503, code=503, title="No catalog",
                               message=f"{exc.message}. {exc.hint or ''}")
        except SynthmedError as exc:
            return self.render("error.html", status=404, code=404, title="Not found", message=exc.message)
        except Exception:  # a bug: logged with its traceback; the page says nothing of the site's insides
            log.exception("serve: %s %s failed", request.method, request.path)
            return self.render("error.html", status=500, code=500, title="Internal error",
                               message="this page failed; the server log says why")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        resp = self.dispatch(request)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        # one line per request: who fetched which blob or index (the query string is left out)
        log.info("%s %s %s %s", request.remote_addr, request.method, request.path, resp.status_code)
        return resp(environ, start_response)


def _redirect(new_url: str) -> Response:
    """A 308 to the same host: the path and query of ``new_url`` only (the Host header, which
    a client chooses, never reaches the Location)."""
    parts = urlsplit(new_url)
    where = "/" + parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    return Response(f"moved to {where}\n", status=308, mimetype="text/plain", headers={"Location": where})


def make_app(settings: Settings, *, token: str | None = None, public_catalogue: bool = False) -> SiteApp:
    return SiteApp(settings, token=token, public_catalogue=public_catalogue)


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (its first line, stripped); an empty file is an error."""
    if path is None:
        return None
    try:
        text = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--token-file {path}: cannot read it: {why}",
                          hint="give a file holding the token on its first line") from None
    token = text.splitlines()[0].strip() if text else ""
    if len(token) < 16:
        raise ConfigError(f"--token-file {path}: the token is empty or shorter than 16 characters",
                          hint="e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`")
    return token
