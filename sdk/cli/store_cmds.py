"""``synthmed verify``: re-hash the whole store and quarantine corrupt blobs."""

from __future__ import annotations

import argparse
import sys

from .common import add_json_flag, print_json, settings_from_args


def cmd_verify(args: argparse.Namespace) -> int:
    from synthmed.registry.errors import SiteNotFound
    from synthmed.registry.artefacts.store import Store
    from synthmed.registry.artefacts.packages_folder import PackagesFolder

    settings = settings_from_args(args)
    if not settings.site_file.exists() and not settings.store_dir.is_dir():
        raise SiteNotFound(f"no site at {settings.home} (no site.toml, no store/)",
                           hint=f"create one: `synthmed init {settings.home} --upstream NAME=URL`, "
                                "or point --site / SYNTHMED_HOME at an existing site")
    store = Store(settings.store_dir)
    counter = {"n": 0}
    show = not args.json and sys.stderr.isatty()

    def progress(sha: str, ok: bool) -> None:
        counter["n"] += 1
        print(f"\rverifying: {counter['n']} blob(s) checked", end="", file=sys.stderr, flush=True)

    report = store.verify_all(progress=progress if show else None)
    if show and counter["n"]:
        print(file=sys.stderr)
    bad_packages = PackagesFolder(settings.packages_dir).verify_all(
        lambda sha: store.blob_path(sha) if store.has(sha) else None)
    if args.json:
        print_json({"store": str(store.root), **report.as_dict(), "changed_packages": bad_packages})
    else:
        mb = report.bytes / 1e6
        print(f"{store.root}: {report.checked} blob(s) checked, {report.ok} ok, {len(report.corrupt)} corrupt "
              f"({mb:.1f} MB in {report.seconds:.1f}s)")
        for c in report.corrupt:
            where = c.get("quarantined_to") or "left in place"
            print(f"  corrupt: {c.get('sha256') or c.get('path')}: {c['reason']} -> {where}", file=sys.stderr)
        if report.corrupt:
            print("corrupt blobs were moved to quarantine/; they are fetched again when next needed "
                  "(the daemon's mirror job, or generating from the model)", file=sys.stderr)
        for b in bad_packages:
            print(f"  changed package: packages/{b['sha256']}: {b['reason']} -> removed; it is unpacked again "
                  "from its verified blob when next needed", file=sys.stderr)
    return 1 if report.corrupt or bad_packages else 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("verify", help="re-hash every blob in the store and every unpacked package",
                       description="Re-hash every blob of the site's store (ignoring what was verified before); "
                                   "corrupt blobs move to store/quarantine/ with a note of why. Every unpacked "
                                   "package is re-hashed against its manifest; a changed one is removed (it is "
                                   "unpacked again from its verified blob). Exit status 1 when anything was corrupt.")
    add_json_flag(p)
    p.set_defaults(func=cmd_verify)
