"""``synthmed serve``: the web catalogue, the store and the accepted indexes, read-only."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import settings_from_args

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    import waitress

    from synthmed.registry.errors import SiteNotFound
    from synthmed.serve.app import make_app, read_token

    settings = settings_from_args(args)
    if not settings.site_file.exists():
        raise SiteNotFound(f"no site at {settings.home} (no site.toml)",
                           hint="point --site / SYNTHMED_HOME at a site (`synthmed init` creates one)")
    token = read_token(Path(args.token_file) if args.token_file else None)
    if args.host not in ("127.0.0.1", "::1", "localhost") and token is None:
        print(f"warning: serving on {args.host} without --token-file: anyone who reaches it can read the store "
              "and the indexes (the catalogue pages are public either way)", file=sys.stderr)
    if not args.quiet:
        logging.getLogger("synthmed.serve").setLevel(logging.INFO)
    app = make_app(settings, token=token)
    server = waitress.create_server(app, host=args.host, port=args.port, threads=args.threads, ident="synthmed")
    host, port = server.getsockname()[:2]  # type: ignore[union-attr]
    print(f"serving {settings.home} at http://{host}:{port}/ (Ctrl-C or SIGTERM stops)", file=sys.stderr, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("serve", help="web catalogue, status page, and store + indexes for downstream sites")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8070, help="TCP port (default 8070; 0: any free port)")
    p.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    p.add_argument("--token-file", metavar="FILE",
                   help="require this token (HTTP Basic password or Bearer) for /store and /git")
    p.set_defaults(func=cmd_serve)
