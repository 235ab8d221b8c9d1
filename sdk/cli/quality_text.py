"""The quality part of ``synthmed show``: the site's measured values as quality cards (one
line of provenance and a compact metrics table per comparability key) and the memorisation
audits with their verdicts (:mod:`synthmed.registry.measuring.cards`). ``show`` runs on the
site, so it prints the site-local paths a folder measurement recorded (the model page never does)."""

from __future__ import annotations

from typing import Any

from synthmed.registry.measuring.cards import audit_cards, evaluation_cards


def quality_lines(evals: list[dict[str, Any]], audits: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    cards = evaluation_cards(evals)
    if cards:
        lines.append("measured on this site (synthmed evaluate; compare values only under the same key):")
    for c in cards:
        lines.append(f"  key {c['key'][:12]}: {c['line']}; {c['when'][:19]}")
        for what, path in sorted(c["site_local"].items()):
            lines.append(f"    {what} folder on this site: {path}")
        names = [f"{m['name']} {m['arrow']}".strip() for m in c["metrics"]]
        values = [f"{m['value']:.4g}" for m in c["metrics"]]
        widths = [max(len(a), len(b)) for a, b in zip(names, values)]
        for start in range(0, len(names), 6):  # six metrics a row: stays inside 100 columns
            part = range(start, min(start + 6, len(names)))
            lines.append("    " + "  ".join(names[i].ljust(widths[i]) for i in part).rstrip())
            lines.append("    " + "  ".join(values[i].ljust(widths[i]) for i in part).rstrip())
    if cards:
        lines.append("  (↓ lower is better, ↑ higher is better; full provenance: `synthmed show REF --json`)")
        lines.append("")
    acards = audit_cards(audits)
    if acards:
        lines.append("memorisation audit (synthmed audit; does the model give back its training images?):")
    for a in acards:
        lines.append(f"  {str(a['verdict']).upper()}: {a['line']}; {str(a['when'])[:19]}")
        for what, path in sorted(a["site_local"].items()):
            lines.append(f"    {what} folder on this site: {path}")
        lines += [f"    - {r}" for r in a["reasons"]]
        lines.append("    " + "; ".join(f"{k} {v}" for k, v in a["numbers"]))
    if acards:
        lines.append("")
    return lines
