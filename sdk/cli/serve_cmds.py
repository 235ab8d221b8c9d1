"""``synthmed serve``: the web catalogue, the store and the accepted indexes, read-only."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import settings_from_args

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    from synthmed.registry.errors import ConfigError, SiteNotFound
    from synthmed.serve.app import make_app, read_token
    from synthmed.serve.limits import ServeLimits
    from synthmed.serve.server import Server

    settings = settings_from_args(args)
    if not settings.site_file.exists():
        raise SiteNotFound(f"no site at {settings.home} (no site.toml)",
                           hint="point --site / SYNTHMED_HOME at a site (`synthmed init` creates one)")
    token = read_token(Path(args.token_file) if args.token_file else None)
    if args.public_catalogue and token is None:
        raise ConfigError("--public-catalogue needs --token-file (without a token every page is public)",
                          hint="give --token-file FILE, or leave --public-catalogue out")
    if args.host not in ("127.0.0.1", "::1", "localhost") and token is None:
        print(f"warning: serving on {args.host} without --token-file: anyone who reaches it can read every page, "
              "the store and the indexes", file=sys.stderr)
    for flag, value in (("--max-client-connections", args.max_client_connections),
                        ("--idle-timeout", args.idle_timeout)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1", hint=f"give {flag} a positive number")
    if not args.quiet:
        logging.getLogger("synthmed.serve").setLevel(logging.INFO)
    app = make_app(settings, token=token, public_catalogue=args.public_catalogue)
    limits = ServeLimits(per_client=args.max_client_connections, idle_timeout_s=args.idle_timeout)
    server = Server(app, args.host, args.port, threads=args.threads, limits=limits)
    server.install_sigterm()
    host, port = server.getsockname()
    print(f"serving site {settings.name} at http://{host}:{port}/ (Ctrl-C or SIGTERM stops)", file=sys.stderr,
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        server.close()
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from synthmed.serve.limits import ServeLimits

    defaults = ServeLimits()
    p = sub.add_parser("serve", help="web catalogue, status page, and store + indexes for downstream sites")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8070, help="TCP port (default 8070; 0: any free port)")
    p.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    p.add_argument("--token-file", metavar="FILE",
                   help="require this token (HTTP Basic password or Bearer) for every page, /store and /git")
    p.add_argument("--public-catalogue", action="store_true",
                   help="with --token-file: open the catalogue pages (search, models, test reports) to anyone; "
                        "/status, /health, /store and /git still need the token")
    p.add_argument("--max-client-connections", type=int, default=defaults.per_client, metavar="N",
                   help=f"open connections per client address (default {defaults.per_client})")
    p.add_argument("--idle-timeout", type=int, default=defaults.idle_timeout_s, metavar="S",
                   help=f"close a connection idle this many seconds (default {defaults.idle_timeout_s})")
    p.set_defaults(func=cmd_serve)
