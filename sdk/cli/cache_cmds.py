"""``synthmed cache ls`` and ``synthmed cache prune``."""

from __future__ import annotations

import argparse

from .common import add_json_flag, print_json, print_table


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _rows(entries: list) -> list[dict[str, str]]:  # type: ignore[type-arg]
    return [{"sha256": c.sha256[:16], "size": _human(c.size), "package": _human(c.package_bytes),
             "age_days": f"{c.age_days:g}", "needed_by": ", ".join(c.needed_by) or "(unused)"} for c in entries]


def cmd_cache_ls(args: argparse.Namespace) -> int:
    from synthmed.daemon.cache import cache_entries
    from synthmed.registry.catalog import Catalog

    from .site_cmds import _site

    settings = _site(args)
    with Catalog.open(settings.catalog_path, readonly=True) as cat:
        entries = cache_entries(settings, cat)
    if args.json:
        print_json([c.as_dict() for c in entries])
        return 0
    print_table(_rows(entries), ["sha256", "size", "package", "age_days", "needed_by"])
    total = sum(c.size + c.package_bytes for c in entries)
    print(f"{len(entries)} blob(s), {_human(total)} with their packages")
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from synthmed.daemon.cache import cache_entries, parse_size, prune, select_prune
    from synthmed.daemon.lock import SiteLock
    from synthmed.registry.catalog import Catalog

    from .site_cmds import _site

    settings = _site(args)
    max_bytes = parse_size(args.max_size) if args.max_size is not None else None
    with SiteLock(settings.home, "synthmed cache prune"), \
            Catalog.open(settings.catalog_path, readonly=False) as cat:
        victims = select_prune(cache_entries(settings, cat), older_than_days=args.older_than, max_bytes=max_bytes,
                               unused=args.unused)
        if not args.dry_run:
            prune(settings, cat, victims)
    freed = sum(c.size + c.package_bytes for c in victims)
    if args.json:
        print_json({"dry_run": args.dry_run, "removed": [c.as_dict() for c in victims], "freed_bytes": freed})
        return 0
    if victims:
        print_table(_rows(victims), ["sha256", "size", "package", "age_days", "needed_by"])
    print(f"{'would remove' if args.dry_run else 'removed'} {len(victims)} blob(s), {_human(freed)}"
          + ("; needed ones are fetched again when used (or by the next mirror job)"
             if any(c.needed_by for c in victims) and not args.dry_run else ""))
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    c = sub.add_parser("cache", help="the store's blobs and unpacked packages: list them, prune them")
    csub = c.add_subparsers(dest="cache_command", metavar="COMMAND")
    p = csub.add_parser("ls", help="every blob: size, unpacked package size, age, the records that need it")
    add_json_flag(p)
    p.set_defaults(func=cmd_cache_ls)
    p = csub.add_parser("prune", help="remove blobs (and their packages) by age, size cap or because unused")
    p.add_argument("--unused", action="store_true", help="blobs no non-yanked record needs")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="blobs fetched more than DAYS ago")
    p.add_argument("--max-size", metavar="SIZE", help="then the oldest (unneeded first) until the rest fits, e.g. 10G")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    add_json_flag(p)
    p.set_defaults(func=cmd_cache_prune)
