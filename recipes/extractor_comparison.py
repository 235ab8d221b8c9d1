"""The retina/IHC comparison of docs/models.md with several extractors at once: each model's
samples (and real training-region patches, a real-data reference point) measured against
a site's held-out reference set with every extractor named, from the same images.

    python recipes/extractor_comparison.py --site SITE --set retina -n 500 \
        --extractor randconv-224 --extractor frd-radiomics --workers 2 --out result.json

The site needs the reference set (`retina-heldout` or `ihc-heldout`, made as
scripts/main-job.sh makes them) and the models mirrored. Samples are seeds 0..n-1 with each
model's default parameters, generated once and fed to every extractor. The real
training-region patches: retina, n crops from rows < 530 (the DDPM recipe's training rows),
half vessel half background, no flips; IHC, n random 64x64 crops of rows 0..383 of ihc.png;
both seeded (numpy default_rng(20261201)). Prints a Markdown table and writes JSON with the
values, the extraction speed of each set (images/s) and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_common"))
import buildlib  # noqa: E402
SETS = {
    "retina": ("retina-heldout", ["retina-patch-ddpm", "retina-patch-ldm", "retina-patch-dcgan"]),
    "ihc": ("ihc-heldout", ["ihc-patch-dcgan", "ihc-patch-dcgan-medigan"]),
}
COLUMNS = ("fd", "frd", "precision", "recall", "density", "coverage")


def real_training_patches(which: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(20261201)
    if which == "retina":
        r = buildlib.load_module("retina_ddpm_train_cmp", HERE / "retina-patch-ddpm" / "train.py")
        im, disc, ves = r.prepare()
        train = r.patch_index(disc, ves, (0, r.SPLIT_ROW))
        nv = n // 2
        v = r.crops(im, train[r.VESSEL], rng.choice(len(train[r.VESSEL]), nv, replace=False), rng, False)
        b = r.crops(im, train[r.BACKGROUND], rng.choice(len(train[r.BACKGROUND]), n - nv, replace=False), rng, False)
        return np.concatenate([v, b])
    from skimage import data

    ihc = data.immunohistochemistry()[:384]
    ys = rng.integers(0, ihc.shape[0] - 64 + 1, n)
    xs = rng.integers(0, ihc.shape[1] - 64 + 1, n)
    return np.stack([ihc[y:y + 64, x:x + 64] for y, x in zip(ys, xs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--set", choices=sorted(SETS), required=True)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--extractor", action="append", required=True)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--models", help="comma-separated models (default: the set's starters)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from synthmed.registry.catalog import Catalog
    from synthmed.registry.measuring.evaluate import MetricSettings, feature_values, generate, pick_output
    from synthmed.registry.measuring.extractors import config_key, open_extractor
    from synthmed.registry.measuring.reference_sets import open_reference
    from synthmed.registry.settings import load_settings

    settings = load_settings(args.site)
    ref_name, models = SETS[args.set]
    if args.models:
        models = args.models.split(",")
    reference = open_reference(settings, ref_name)
    ms = MetricSettings()
    load_before = os.getloadavg()
    with Catalog.open(settings.catalog_path) as cat:
        extractors = [open_extractor(cat, settings, e, workers=args.workers) for e in args.extractor]
        sets: dict[str, np.ndarray] = {}
        for m in models:
            entry = cat.models.resolve(m)
            t = time.perf_counter()
            _, images, _ = generate(settings, entry, pick_output(entry, None), args.n, 0, {}, lambda s: None)
            print(f"{entry.qualified_ref}: {len(images)} samples in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            sets[f"{m} {entry.version}"] = images
    sets["real training-region patches (not a model)"] = real_training_patches(args.set, args.n)
    rows: dict[str, dict[str, Any]] = {name: {} for name in sets}
    speed: list[dict[str, Any]] = []
    for ex in extractors:
        ref_feats = reference.features(ex, config_key(ex))
        for name, images in sets.items():
            t = time.perf_counter()
            feats = ex.features(images, (0.0, 255.0))
            dt = time.perf_counter() - t
            speed.append({"extractor": ex.record.ref, "set": name, "images": len(images), "seconds": dt,
                          "images_per_s": len(images) / dt, "load": os.getloadavg()})
            print(f"{ex.record.ref} {name}: {len(images) / dt:.2f} images/s", file=sys.stderr)
            vals = feature_values(ex, ref_feats, feats, ms)
            rows[name][ex.record.ref] = {k: v for k, v in vals.items() if k in COLUMNS}
    load_after = os.getloadavg()
    heads = [f"{e.record.id} {c}" for e in extractors for c in COLUMNS
             if any(c in rows[n].get(e.record.ref, {}) for n in rows)]
    print(f"| model | {' | '.join(heads)} |")
    print("|" + " --- |" * (len(heads) + 1))
    for name, per in rows.items():
        cells = []
        for e in extractors:
            cells += [f"{per[e.record.ref][c]:.4g}" for c in COLUMNS if c in per[e.record.ref]]
        print(f"| {name} | {' | '.join(cells)} |")
    if args.out:
        args.out.write_text(json.dumps({"set": args.set, "reference": reference.describe(), "n": args.n,
                                        "seeds": [0, args.n - 1], "values": rows, "speed": speed,
                                        "load_before": load_before, "load_after": load_after,
                                        "cpus": os.cpu_count()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
