"""Catalog search at 10,000 and 100,000 synthetic records (docs/design.md, performance
targets: median < 5 ms at 100,000).

For each size: build a catalog (time), then run a fixed mix of queries through the
catalog's search (``ranking.search``: ``catalog.models.search``, ranked where asked) on a
read-only connection (free text, punctuation, filters, ranking; each returns up to 50
fully built entries) and report the median and p95 latency. The
baseline, measured in the same run on the same file, is a plain ``LIKE`` scan over the
same text columns for the same free-text queries (what a catalog without FTS would do).

    .venv/bin/python bench/search.py [--sizes 10000 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synthmed.registry.measuring import ranking as rankings
from synthmed.registry.catalog import Catalog
from synthmed.registry.records import Record

MODALITIES = ["CT", "MRI", "MMG", "US", "PET", "X-ray", "histopathology", "OCT", "fundus", "dermoscopy"]
ANATOMIES = ["lung", "brain", "breast", "liver", "knee", "heart", "prostate", "colon", "retina", "skin", "kidney"]
FAMILIES = [("gan", "DCGAN"), ("gan", "StyleGAN2"), ("gan", "WGAN-GP"), ("diffusion", "DDPM"),
            ("latent-diffusion", "LDM"), ("vae", "VQ-VAE"), ("flow", "Glow"), ("procedural", "phantom")]
LICENSES = ["MIT", "Apache-2.0", "CC-BY-4.0", "CC-BY-NC-4.0", "BSD-3-Clause", "GPL-3.0-only"]


#: distinct words in the synthetic text: about what Heaps' law gives for ~6 million words of
#: English prose (V ~ 30 n^0.5); word frequencies follow Zipf's law (s = 1)
VOCABULARY = 30_000


def vocabulary(rng: random.Random, n: int = VOCABULARY) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 10))))
    return sorted(words)


_CUM: list[float] = []


def zipf_weights(n: int) -> list[float]:
    if len(_CUM) != n:
        _CUM.clear()
        total = 0.0
        for rank in range(1, n + 1):
            total += 1.0 / rank
            _CUM.append(total)
    return _CUM


def synthetic(i: int, rng: random.Random, vocab: list[str], base: dict[str, Any]) -> Record:
    cum = zipf_weights(len(vocab))

    def words(k: int) -> str:
        return " ".join(rng.choices(vocab, cum_weights=cum, k=k))

    fam, name = rng.choice(FAMILIES)
    data = dict(base)
    data.update({
        "id": f"model-{i:06d}", "version": f"1.{i % 7}.0",
        "title": f"{rng.choice(ANATOMIES).title()} {words(3)} {name}",
        "summary": words(12), "description": words(40) + (" mass-like lesions" if i % 97 == 0 else ""),
        "modality": rng.sample(MODALITIES, rng.randint(1, 2)), "anatomy": rng.sample(ANATOMIES, rng.randint(1, 2)),
        "generates": [rng.choice(["image", "mask", "volume", "patch"])], "tags": words(3).split(),
        "architecture": {"family": fam, "name": name}, "license": rng.choice(LICENSES),
        "metrics": [{"name": "FID", "value": round(rng.uniform(2, 120), 2), "better": "lower", "source": "reported"},
                    {"name": "precision", "value": round(rng.random(), 3), "better": "higher",
                     "source": "measured"}],
    })
    return Record(data=data)


#: a valid record (the tests' fixture, read as plain JSON: the bench needs no pytest); every
#: synthetic record starts from it
BASE_RECORD = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "records" / "valid" / "full.json"


def base_record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BASE_RECORD.read_text())
    return data


def build(path: Path, n: int, seed: int) -> tuple[float, list[str]]:
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    base = base_record()
    t0 = time.perf_counter()
    cat = Catalog.open(path, readonly=False)
    with cat.transaction():
        cat.federation.put_upstream("public", priority=10, ord=0, accepted_commit="0" * 40, subfolder="")
        ids = []
        for i in range(n):
            rec = synthetic(i, rng, vocab, base)
            cat.models.upsert_record("public", f"models/{rec.id}/{rec.version}.json", rec, "0" * 40)
            ids.append(rec.id)
        cat.conn.execute("UPDATE models SET is_latest = 1")  # one version per id here
    cat.conn.execute("PRAGMA optimize")
    cat.conn.execute("INSERT INTO models_fts(models_fts) VALUES ('optimize')")
    cat.close()
    return time.perf_counter() - t0, vocab


def queries(vocab: list[str], k: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    fixed = [{"query": "mass-like"}, {"query": '"AND'}, {"query": "*"}, {"query": "lung"},
             {"query": "brain", "modality": "MRI"}, {"query": "", "modality": "CT", "rank": "FID"},
             {"query": "", "architecture": "diffusion", "anatomy": "liver"}, {"query": "stylegan2 knee"}]
    out = list(fixed)
    cum = zipf_weights(len(vocab))
    while len(out) < k:
        kind = rng.random()
        w = rng.choice(vocab)  # any word of the vocabulary
        common = rng.choices(vocab, cum_weights=cum)[0]  # a word drawn by its frequency in the text
        if kind < 0.4:
            out.append({"query": w})
        elif kind < 0.55:
            out.append({"query": common})
        elif kind < 0.65:
            out.append({"query": f"{w} {common}"})
        elif kind < 0.75:
            out.append({"query": w[:4]})  # a prefix, as typed
        elif kind < 0.85:
            out.append({"query": w, "modality": rng.choice(MODALITIES)})
        elif kind < 0.95:
            out.append({"query": rng.choice(ANATOMIES), "rank": rng.choice(["FID", "precision"])})
        else:
            out.append({"query": f"{w}-{rng.choice(vocab)} (\"*"})
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_search(path: Path, qs: list[dict[str, Any]]) -> dict[str, Any]:
    cat = Catalog.open(path)
    for q in qs[:20]:  # warm the page cache
        rankings.search(cat, **q)
    times, hits = [], []
    for q in qs:
        t0 = time.perf_counter()
        found = rankings.search(cat, **q)
        times.append((time.perf_counter() - t0) * 1000)
        hits.append(len(found))
    cat.close()
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(pct(times, 95), 3),
            "max_ms": round(max(times), 3), "mean_hits": round(statistics.mean(hits), 1)}


def run_like(path: Path, qs: list[dict[str, Any]]) -> dict[str, Any]:
    """Baseline: the same free-text queries as a LIKE scan (every word must appear somewhere)."""
    import sqlite3

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    cols = ["title", "summary", "description", "modality", "anatomy", "generates", "tags", "architecture"]
    texts = [q["query"] for q in qs if q.get("query", "").strip()]
    times = []
    for text in texts:
        words = [w for w in text.split() if any(c.isalnum() for c in w)] or [text]
        where = " AND ".join("(" + " OR ".join(f"{c} LIKE ?" for c in cols) + ")" for _ in words)
        args = [f"%{w}%" for w in words for _ in cols]
        t0 = time.perf_counter()
        conn.execute(f"SELECT record FROM models WHERE is_latest = 1 AND {where} ORDER BY id LIMIT 50", args).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(pct(times, 95), 3),
            "queries": len(texts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-search-") as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"catalog-{n}.db"
            build_s, vocab = build(path, n, args.seed)
            qs = queries(vocab, args.queries, args.seed + 1)
            fts = run_search(path, qs)
            like = run_like(path, qs)
            results.append({
                "records": n, "build_s": round(build_s, 2), "db_mb": round(path.stat().st_size / 2**20, 1),
                "search": fts, "baseline_like_scan": like,
                "speedup_median": round(like["median_ms"] / fts["median_ms"], 1) if fts["median_ms"] else None,
                "target_median_ms": 5.0, "meets_target": fts["median_ms"] < 5.0,
            })
            print(json.dumps(results[-1]), file=sys.stderr)
    mix = ("8 fixed (mass-like, \"AND, *, lung, filters, rank), then: 40% a vocabulary word, 15% a word drawn "
           "by its text frequency (Zipf), 10% two words, 10% a 4-letter prefix, 10% word + modality filter, "
           "10% anatomy word ranked by FID/precision, 5% punctuation soup")
    print(json.dumps({"bench": "search", "queries_per_size": args.queries, "vocabulary": VOCABULARY,
                      "query_mix": mix, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
