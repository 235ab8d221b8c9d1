"""``synthmed dataset``'s site sub-commands (see dataset_cmds): ``list``, ``show``, ``get``
and ``verify`` over the published datasets a site's catalog holds (docs/datasets.md, "On a site").
The library is :mod:`synthmed.published` and :mod:`synthmed.published_verify`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .common import add_json_flag, print_json, print_table

if TYPE_CHECKING:
    from synthmed.registry.catalog import DatasetEntry


def _site(args: argparse.Namespace) -> Any:
    from synthmed.site import Site

    return Site(getattr(args, "site", None))


def print_datasets(found: "list[DatasetEntry]", as_json: bool) -> int:
    """The table (or JSON) of ``dataset list`` and ``search --datasets``."""
    if as_json:
        print_json([e.summary() for e in found])
        return 0
    def audit(e: "DatasetEntry") -> str:  # a verdict published over an override says so
        a = e.record.data["audit"]
        return str(a["verdict"]) + (" (overridden)" if a.get("override") else "")

    rows = [{"ref": e.qualified_ref, "model": e.record.model_ref, "count": e.record.generation["count"],
             "outputs": ",".join(e.record.generation["outputs"]), "license": e.record.get("license"),
             "audit": audit(e), "mirrored": "yes" if e.mirrored else "no"}
            for e in found]
    print_table(rows, ["ref", "model", "count", "outputs", "license", "audit", "mirrored"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    site = _site(args)
    filters = {k: v for k, v in (("modality", args.modality), ("anatomy", args.anatomy), ("model", args.model))
               if v}
    return print_datasets([d.entry for d in site.datasets(" ".join(args.query), **filters)], args.json)


def cmd_show(args: argparse.Namespace) -> int:
    site = _site(args)
    pub = site.dataset(args.ref, allow_yanked=True)
    d = pub.describe()
    # every version of this upstream's dataset, newest first (`dataset list` shows the served one)
    d["versions"] = [e.version for e in site.catalog.datasets.versions(pub.entry.upstream, pub.entry.id)]
    if args.json:
        print_json(d)
        return 0
    p, card, audit = d["provenance"], d.get("card") or {}, d.get("audit_detail") or {}
    lines = [f"{d['ref']}  {d['title']}", f"  {d['summary']}",
             f"  status:     {d['status']}" + (f" ({d['status_reason']})" if d.get("status_reason") else ""),
             "  versions:   " + ", ".join(v + (" (this one)" if v == d["version"] else "") for v in d["versions"]),
             f"  model:      {p['model']} (package sha256 {p['model_sha256']})",
             f"  items:      {p['count']} x {', '.join(d['outputs'])} as {d['file_format']}, seeds {p['seeds']}",
             f"  params:     {p['params'] or '{}'}" + (f"  options: {p['options']}" if p["options"] else ""),
             *(f"  input:      {i['name']}: {i['count']} file(s), sha256 {i['files_sha256']}" for i in p["inputs"]),
             f"  tolerance:  {p['tolerance'] or 'none (byte-identical)'}" + (f"; made on {p['device']}"
                                                                             if p.get("device") else ""),
             f"  licence:    {d['license']}",
             f"  audit:      {audit.get('verdict')}" + (f" ({'; '.join(audit['reasons'])})" if audit.get("reasons")
                                                       else "") + (f"; override: {audit['override']}"
                                                                   if audit.get("override") else ""),
             f"  sha256:     {d['sha256']} ({d['size']} bytes)",
             f"  manifest:   {p['manifest_sha256']}",
             *(f"  source:     {s}" for s in d["sources"]),
             f"  mirrored:   {'yes, verified in the store' if d['mirrored'] else 'no (' + d['artefact_state'] + ')'}",
             f"  intended use: {card.get('intended_use', '-')}", f"  limitations:  {card.get('limitations', '-')}"]
    for m in card.get("metrics") or []:
        ref = m.get("reference") or {}
        lines.append(f"  metric: {m['name']} = {m['value']}" + (f" (reference {ref.get('name')}: {ref.get('value')})"
                                                               if ref else ""))
    print("\n".join(lines))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    pub = _site(args).dataset(args.ref)
    dest = pub.get(args.output)
    print(f"{pub.ref}: {len(pub)} item(s) in {dest} (sha256 {pub.sha256[:12]}... verified, manifest checked)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from synthmed.published_verify import verify_dataset

    site = _site(args)
    pub = site.dataset(args.ref, allow_yanked=True)
    samples: int | str = "all" if str(args.samples) == "all" else args.samples
    report = verify_dataset(site, pub, samples=samples, pick_seed=args.pick_seed, device=args.device,
                            folder=args.folder, max_abs=args.max_abs)
    if args.json:
        print_json(report.as_dict())
    else:
        print(f"{report.dataset}: re-deriving {len(report.picked)} of {len(pub)} item(s) from {report.model} "
              f"(pick seed {report.pick_seed})")
        if report.tolerance_source == "verifier":
            declared = pub.record.generation.get("tolerance")
            print(f"  tolerance: max |diff| {args.max_abs:g}, given with --max-abs (the record declares "
                  f"{declared or 'none: byte-identical or equal arrays only'})")
        for item in report.items:
            for f in item.files:
                extra = f" (max diff {f.max_abs:g})" if f.outcome != "identical" and f.max_abs is not None else ""
                detail = f": {f.detail}" if f.outcome == "DIFFERENT" and f.detail else ""
                print(f"  item {item.index:>6}  seed {item.seed:>10}  {f.file}: {f.outcome}{extra}{detail}")
        if report.passed:
            print(f"ok: every checked item was re-derived from {report.model}")
        else:
            print(f"FAILED: item(s) {', '.join(map(str, report.failing))} were not made by {report.model} "
                  "as published", file=sys.stderr)
    return 0 if report.passed else 1


def register(dsub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this module's sub-commands to ``synthmed dataset``."""
    p = dsub.add_parser("list", help="published datasets this site knows (mirrored or not)",
                        description="The served version of each published dataset: id@version, the model that "
                                    "made it, item count, outputs, licence, audit verdict, whether this site holds "
                                    "a verified copy. TEXT and the filters narrow it (as `synthmed search`).")
    p.add_argument("query", nargs="*", metavar="TEXT", help="free text (id, title, summary, modality, model ...)")
    p.add_argument("--modality")
    p.add_argument("--anatomy")
    p.add_argument("--model", help="only datasets made by this model id")
    add_json_flag(p)
    p.set_defaults(func=cmd_list)

    p = dsub.add_parser("show", help="one dataset: record, card, provenance, audit, sha256, sources, versions",
                        description="One published dataset version (ID, ID@VERSION, UPSTREAM/ID[@VERSION]), "
                                    "and the versions of that dataset this site knows, newest first.")
    p.add_argument("ref", metavar="ID[@VERSION]")
    add_json_flag(p)
    p.set_defaults(func=cmd_show)

    p = dsub.add_parser("get", help="a verified copy of a dataset's files in a folder",
                        description="Copy a dataset's files into DIR: its blob from the store (fetched when "
                                    "missing, unless offline) is re-hashed, unpacked into a staging folder beside "
                                    "DIR, held to its manifest and to the record (manifest sha256, inputs), then "
                                    "renamed into place. Refuses an existing non-empty DIR and a tampered blob.")
    p.add_argument("ref", metavar="ID[@VERSION]")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_get)

    p = dsub.add_parser("verify", help="re-derive items from the pinned model and compare them",
                        description="Pick K items at random (reproducibly, --pick-seed), make each again from the "
                                    "model version the record pins (mirrored on this site) with its seed, "
                                    "parameters, outputs, format and inputs, and compare: byte-identical, within "
                                    "the record's tolerance, or DIFFERENT. Exit status 1 naming the failing items.")
    p.add_argument("ref", metavar="ID[@VERSION]")
    p.add_argument("--samples", default="8", metavar="K|all", help="how many items to check (default 8), or all")
    p.add_argument("--pick-seed", type=int, default=0, metavar="S", help="seed of the random pick (default 0)")
    p.add_argument("--device", help="device to re-derive on (default: the site's)")
    p.add_argument("--max-abs", type=float, metavar="N",
                   help="accept decoded values that differ by at most N from the published ones, in place of the "
                        "record's tolerance (the report says so): for re-deriving with other CPU kernels than the "
                        "publisher's, which may change a few pixels by one grey level")
    p.add_argument("--folder", metavar="DIR", help="the verified, unpacked copy to compare with (made there when "
                                                  "missing; default: the site's cache/datasets/<sha256>/)")
    add_json_flag(p)
    p.set_defaults(func=cmd_verify)
