"""``synthmed serve``: page latency and blob throughput over a real socket (waitress on
127.0.0.1), against baselines measured in the same run on the same site:

- pages (search, a facet, free text, a model page, the status page): the median and p95
  of N requests each; baseline: the same catalog work in-process (``catalog.models.search`` with
  the same filters, ``catalog.models.resolve`` and ``site_status``) without HTTP or HTML;
- a blob (the largest in the store) read over HTTP in full; baseline: reading the file.

The site is this repository's index synced into a temporary folder.

    .venv/bin/python bench/serve.py [--requests 200]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import waitress

from synthmed.cli import main as cli
from synthmed.daemon.status import site_status
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import load_settings
from synthmed.registry.artefacts.store import Store
from synthmed.serve.app import make_app

REPO = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
    fn()  # warm
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return {"median_ms": round(statistics.median(ts) * 1e3, 3), "p95_ms": round(ts[int(0.95 * (len(ts) - 1))] * 1e3, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "site"
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(["-q", "init", str(home), "--upstream", f"public={REPO}"]) == 0
            assert cli(["-q", "--site", str(home), "sync"]) == 0
        settings = load_settings(home)
        server = waitress.create_server(make_app(settings), host="127.0.0.1", port=0, threads=4)
        port = server.getsockname()[1]  # type: ignore[union-attr]
        threading.Thread(target=lambda: _run(server), daemon=True).start()

        def get(path: str) -> Callable[[], None]:
            def fn() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, (path, resp.status)
                conn.close()
            return fn

        def in_process(fn: Callable[[Catalog], Any]) -> Callable[[], None]:
            def run() -> None:
                with Catalog.open(settings.catalog_path) as cat:
                    fn(cat)
            return run

        n = args.requests
        pages = {
            "search (all)": (get("/"), in_process(lambda c: c.models.search("", limit=500))),
            "facet modality=CT": (get("/?modality=CT"),
                                  in_process(lambda c: c.models.search("", modality="CT", limit=500))),
            "free text 'dcgan mass'": (get("/?q=dcgan+mass"),
                                       in_process(lambda c: c.models.search("dcgan mass", limit=500))),
            "model page": (get("/model/public/retina-patch-ddpm"),
                           in_process(lambda c: (c.models.resolve("public/retina-patch-ddpm"),
                                                 c.models.rows_for_id("retina-patch-ddpm")))),
            "status page": (get("/status"), in_process(lambda c: site_status(settings, c))),
        }
        out: dict[str, Any] = {"requests": n, "load_average": os.getloadavg(), "pages": {}}
        for name, (http_fn, base_fn) in pages.items():
            out["pages"][name] = {"http": timed(http_fn, n), "baseline_in_process": timed(base_fn, n)}
        store = Store(settings.store_dir)
        sha = max(store.iter_blobs(), key=lambda s: store.blob_path(s).stat().st_size)
        size = store.blob_path(sha).stat().st_size
        blob = timed(get(f"/store/blobs/sha256/{sha[:2]}/{sha[2:]}"), 50)
        plain = timed(lambda: store.blob_path(sha).read_bytes(), 50)
        out["blob"] = {"bytes": size, "http": blob, "baseline_read_file": plain,
                       "http_MB_per_s": round(size / blob["median_ms"] / 1e3, 1)}
        server.close()
        print(json.dumps(out, indent=2))
    return 0


def _run(server: Any) -> None:
    try:
        server.run()
    except OSError:  # closing the socket ends waitress's loop
        pass


if __name__ == "__main__":
    sys.exit(main())
