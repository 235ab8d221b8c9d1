"""``synthmed status``: upstream heads and ages, blob counts, last job runs, failures."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from synthmed.registry.catalog import Catalog
from synthmed.registry.redact import redact_data
from synthmed.registry.settings import Settings
from synthmed.registry.artefacts.store import Store
from synthmed.registry.upstream_check import BUNDLE_URL

from . import runstate
from .sync import SUBSTITUTION

#: how far (hours) a last success may lie ahead of this machine's clock before it is a problem
FUTURE_TOLERANCE_H = 0.1


def health(st: dict[str, Any]) -> dict[str, Any]:
    """The health check (``synthmed status`` exits 3 when not ok, ``/health`` answers 503):
    unhealthy when an upstream never synced, is stale (not counted for ``bundle:`` upstreams,
    which move only by import), its last success lies in the future (a clock set wrong or a
    forged state), or its last sync failed or was refused, when it rewrote a merged version
    (the rewrite is withheld: the version keeps being served as accepted), or when the last
    test of a model version failed."""
    problems: list[str] = []
    for u in st["upstreams"]:
        if u["head"] is None:
            problems.append(f"upstream {u['name']}: never synced successfully")
        elif u.get("future"):
            problems.append(f"upstream {u['name']}: last successful sync {u['last_success']} lies in the future "
                            "(the clock is wrong or the state was forged)")
        elif u["stale"] and u["url"] != BUNDLE_URL:  # an air-gapped upstream moves only when a bundle comes
            problems.append(f"upstream {u['name']}: stale ({u['age_hours']} h since the last successful sync)")
        if u["last_status"] in ("refused", "failed"):
            problems.append(f"upstream {u['name']}: last sync {u['last_status']}")
    for p in st.get("problems") or []:
        if SUBSTITUTION in str(p.get("reason")):
            problems.append(f"upstream {p['upstream']}: {p['path']}: a rewrite of a merged version was refused "
                            "(the version as accepted keeps being served)")
    for t in st.get("failing_models") or []:
        problems.append(f"model {t['upstream']}/{t['ref']}: last test failed")
    return {"ok": not problems, "problems": problems}


def _age_hours(when: str | None, now: datetime) -> float | None:
    if not when:
        return None
    try:
        t = datetime.fromisoformat(when)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (now - t).total_seconds() / 3600


def site_status(settings: Settings, catalog: Catalog | None, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``synthmed status`` shows, as plain data (also its ``--json``)."""
    now = now or datetime.now(timezone.utc)
    rows = {r["name"]: r for r in catalog.federation.upstream_rows()} if catalog else {}
    ups = []
    warnings: list[str] = []
    for u in settings.upstreams:
        r = rows.get(u.name) or {}
        exact = _age_hours(r.get("accepted_at"), now)
        # a last success in the future is never fresh: the clock went back or the state is forged
        future = exact is not None and exact < -FUTURE_TOLERANCE_H
        stale = exact is None or future or exact > settings.stale_after_hours
        age = None if exact is None else round(exact, 2)
        entry = {
            "name": u.name, "url": u.url, "branch": u.branch, "subfolder": u.subfolder, "priority": u.priority,
            "require_signed": u.require_signed,
            "head": r.get("accepted_commit"), "head_commit_time": r.get("commit_time"),
            "last_success": r.get("accepted_at"), "age_hours": age, "stale": stale,
            "future": future,
            "last_attempt": r.get("last_attempt"), "last_status": r.get("last_status"),
            "last_reason": r.get("last_reason"),
        }
        ups.append(entry)
        if r.get("accepted_commit") is None:
            warnings.append(f"upstream {u.name}: never synced successfully"
                            + (f" ({r['last_reason']})" if r.get("last_reason") else ""))
        elif future:
            warnings.append(f"upstream {u.name}: last successful sync {r.get('accepted_at')} lies in the future "
                            f"({-(exact or 0.0):.2f} h ahead of this machine's clock): check the clock; "
                            "the upstream counts as stale until it syncs again")
        elif stale:
            warnings.append(f"upstream {u.name}: stale: last successful sync {age} h ago "
                            f"(more than {settings.stale_after_hours:g} h)")
        if r.get("last_status") in ("refused", "failed"):
            warnings.append(f"upstream {u.name}: last sync {r['last_status']}: {r.get('last_reason')}")
    out: dict[str, Any] = {"site": settings.name, "home": str(settings.home), "catalog": str(settings.catalog_path),
                           "upstreams": ups, "stale_after_hours": settings.stale_after_hours}
    blobs: dict[str, int] = {"in_store": 0, "bytes": 0}
    store = Store(settings.store_dir)
    for sha in store.iter_blobs():
        blobs["in_store"] += 1
        blobs["bytes"] += store.blob_path(sha).stat().st_size
    out["daemon"] = runstate.read(settings)
    out["quarantine"] = [{k: q.get(k) for k in ("file", "time", "expected_sha256", "actual_sha256", "source", "reason")}
                         for q in store.quarantined()][-50:]
    if catalog is None:
        out.update(blobs=blobs, models={}, jobs=[], failures=[], failing_models=[], problems=[], last_verify=None,
                   blob_sources=[],
                   warnings=warnings + ["no catalog yet: run `synthmed sync`"])
        out["health"] = health(out)
        return redact_data(out)  # an older sync may have stored a URL with its token
    arts = catalog.artefacts.rows()
    for a in arts:
        blobs[a["state"]] = blobs.get(a["state"], 0) + 1
    out["blobs"] = blobs
    # which source served each blob (the last 100 verified, newest first)
    out["blob_sources"] = sorted(({k: a[k] for k in ("sha256", "size", "source", "verified_at")}
                                  for a in arts if a["state"] == "verified"),
                                 key=lambda a: str(a["verified_at"] or ""), reverse=True)[:100]
    out["models"] = catalog.models.count_models()
    out["jobs"] = [{k: r[k] for k in ("job", "upstream", "started", "finished", "status", "reason", "changed")}
                   for r in catalog.jobs.last_runs()]
    recent = [r for r in catalog.jobs.runs(limit=200) if r["status"] in ("failed", "refused")]
    out["failures"] = [{k: r[k] for k in ("job", "upstream", "subject", "finished", "status", "reason")}
                       for r in recent[:50]]
    out["failing_models"] = [{k: t[k] for k in ("ref", "upstream", "finished", "reason", "report_path")}
                             for t in catalog.tests.failing_models()]
    out["problems"] = catalog.models.problems()
    out["evaluations"] = catalog.evaluations.evaluation_summary()
    out["audits"] = catalog.audits.audit_summary()
    scrubs = [j for j in out["jobs"] if j["job"] == "scrub"]
    out["last_verify"] = scrubs[0] if scrubs else None
    for t in out["failing_models"]:
        warnings.append(f"model {t['upstream']}/{t['ref']}: last test failed: {t['reason']}")
    for a in out["audits"]:
        if a["verdict"] == "fail":
            warnings.append(f"model {a['upstream']}/{a['model_id']}@{a['version']}: memorisation audit failed against "
                            f"{a['training']}: it gives back training images; do not share its samples")
    if out["problems"]:
        refused = sum(SUBSTITUTION in str(p["reason"]) for p in out["problems"])
        warnings.append(f"{len(out['problems'])} record(s) skipped (see problems)"
                        + (f", {refused} of them a refused rewrite of a merged version" if refused else ""))
    out["warnings"] = warnings
    out["health"] = health(out)
    return redact_data(out)  # an older sync may have stored a URL with its token


def format_status(st: dict[str, Any]) -> str:
    h = st.get("health") or {"ok": True, "problems": []}
    lines = [f"site {st['site']} at {st['home']}: {'healthy' if h['ok'] else 'UNHEALTHY'}"]
    d = st.get("daemon") or {}
    if d.get("running"):
        job = f"running {d['job']} since {d['job_started']}" if d.get("job") else "idle"
        lines.append(f"daemon: PID {d['pid']}, {job}")
        dl = d.get("download")
        if dl:
            rate = dl.get("rate_bytes_per_s")
            lines.append(f"  downloading {dl['ref']}: {dl['bytes']} of {dl['total'] or '?'} bytes"
                         + (f" ({rate / 1e6:.2f} MB/s)" if rate is not None else ""))
        for name, when in sorted((d.get("next_runs") or {}).items(), key=lambda kv: str(kv[1])):
            lines.append(f"  next {name}: {when}")
        if d.get("reload_error"):
            lines.append(f"  last reload of site.toml refused ({d['last_reload']}): {d['reload_error']}")
    else:
        lines.append("daemon: not running")
    lines.append("upstreams:")
    for u in st["upstreams"]:
        head = (u["head"] or "-")[:12]
        age = "never" if u["age_hours"] is None else f"{u['age_hours']:g} h ago"
        flag = "  STALE" if u["stale"] else ""
        lines.append(f"  {u['name']:<12} prio {u['priority']:<4} head {head:<12} last ok {age}{flag}  "
                     f"last {u['last_status'] or '-'}")
        if u["last_status"] in ("refused", "failed"):
            lines.append(f"      {u['last_reason']}")
    m = st.get("models") or {}
    if m:
        lines.append(f"models: {m['models']} ({m['versions']} versions, {m['yanked']} yanked, "
                     f"{m['unverified']} unverified)")
    b = st["blobs"]
    lines.append("blobs: " + ", ".join(f"{k} {v}" for k, v in b.items()))
    if st.get("jobs"):
        lines.append("last runs:")
        for j in st["jobs"]:
            who = f" {j['upstream']}" if j["upstream"] else ""
            lines.append(f"  {j['job']}{who}: {j['status']} at {j['finished']}"
                         + (f": {j['reason']}" if j["reason"] else ""))
    if st.get("evaluations"):
        lines.append("measured quality (synthmed evaluate; fd per comparability key, lower is better):")
        for e in st["evaluations"]:
            lines.append(f"  {e['upstream']}/{e['model_id']}@{e['version']} vs {e['reference']} "
                         f"({e['extractor']}, key {str(e['key'])[:12]}): fd {e['fd']:.4g}, "
                         f"precision {e['precision']:.3g}, recall {e['recall']:.3g} at {str(e['finished'])[:19]}")
    if st.get("audits"):
        lines.append("memorisation audits (synthmed audit; the newest per served model and training set):")
        for a in st["audits"]:
            frac = a.get("near_copy_fraction")
            lines.append(f"  {a['upstream']}/{a['model_id']}@{a['version']}: {a['verdict']} against {a['training']}"
                         + (f" / held-out {a['holdout']}" if a.get("holdout") else "")
                         + f", {a['n']} samples" + (f", near-copies {100 * frac:.0f}%" if frac is not None else "")
                         + (" (uninformative)" if a.get("near_copy_uninformative") else "")
                         + f" at {str(a['finished'])[:19]}" + (f": {a['reasons'][0]}" if a.get("reasons") else ""))
    if st.get("failing_models"):
        lines.append("failing models:")
        lines.extend(f"  {t['upstream']}/{t['ref']}: {t['reason']}" for t in st["failing_models"])
    if st.get("problems"):
        lines.append("skipped records:")
        lines.extend(f"  {p['upstream']}: {p['path']}: {p['reason'].splitlines()[-1]}" for p in st["problems"][:20])
    if st.get("quarantine"):
        lines.append(f"quarantined: {len(st['quarantine'])} file(s) in store/quarantine/")
        lines.extend(f"  {q['file']}: {q['reason']} from {q['source']}" for q in st["quarantine"][-5:])
    lv = st.get("last_verify")
    lines.append("last verify (scrub): " + (f"{lv['status']} at {lv['finished']}: {lv['reason']}" if lv else "never"))
    if st.get("warnings"):
        lines.append("warnings:")
        lines.extend(f"  ! {w}" for w in st["warnings"])
    return "\n".join(lines)
