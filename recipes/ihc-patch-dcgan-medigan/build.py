"""Build ihc-patch-dcgan-medigan: the ihc-patch-dcgan weights in medigan's layout.

    python recipes/ihc-patch-dcgan-medigan/build.py --out DIR [--from index/artefacts/ihc-patch-dcgan/1.0.0.zip]

Reads weights.safetensors from the synthmed-1 artefact of ihc-patch-dcgan (no training),
saves the same tensors as ``model.pt`` (torch.save of a state_dict), adds ``__init__.py``
with medigan's ``generate(model_file, num_samples, output_path, save_images, **custom)``
and zips them (sorted entries, fixed timestamps) into DIR/1.0.0.zip. It then checks
that the twin gives, seed for seed, the same pixels as the synthmed-1 package, and
writes DIR/metrics.json with what it found.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "_common"))
import buildlib

VERSION = "1.0.0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--from", dest="src", type=Path, default=REPO / "index/artefacts/ihc-patch-dcgan/1.0.0.zip")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import load

    with zipfile.ZipFile(args.src) as zf:
        state = load(zf.read("weights.safetensors"))
    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "package" / "__init__.py", pkg / "__init__.py")
    # torch.save writes a zip whose entries carry no timestamps: same tensors, same bytes
    buf = io.BytesIO()
    torch.save({k: state[k] for k in sorted(state)}, buf)
    (pkg / "model.pt").write_bytes(buf.getvalue())
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)

    # parity with the synthmed-1 package, seed for seed, the way synthmed's runner calls it
    import importlib.util
    import random

    spec = importlib.util.spec_from_file_location("ihc_medigan_twin", pkg / "__init__.py")
    twin = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(twin)
    synth_dir = out / "synthmed-src"
    if synth_dir.exists():
        shutil.rmtree(synth_dir)
    with zipfile.ZipFile(args.src) as zf:
        zf.extractall(synth_dir)
    sys.path.insert(0, str(synth_dir))
    import model as synth  # type: ignore

    m = synth.build(synth_dir, "cpu")
    seeds = list(range(32))
    a = m.sample(seeds)["image"]
    b = []
    for s in seeds:
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        b.append(twin.generate(str(pkg / "model.pt"), 1, str(out / "png"), save_images=False)[0])
    same = bool(np.array_equal(a, np.stack(b)))
    buildlib.save_grid(np.stack(b[:16]), out / "grid.png", scale=2)  # seeds 0..15, one call per seed
    batch = twin.generate(str(pkg / "model.pt"), 8, str(out / "png"), save_images=True, seed=0)
    pngs = sorted(p.name for p in (out / "png").iterdir())
    buildlib.write_json(out / "metrics.json", {
        "model": "ihc-patch-dcgan-medigan", "version": VERSION, "source_artefact": (str(args.src.resolve().relative_to(REPO)) if REPO in args.src.resolve().parents
                            else str(args.src)),
        "source_sha256": buildlib.sha256_file(args.src),
        "identical_to_synthmed_package_seed_for_seed": same, "seeds_compared": len(seeds),
        "save_images_wrote": pngs, "save_images_returned": repr(batch),
        "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size})
    print("identical to the synthmed-1 package:", same, "zip", zip_path.stat().st_size)
    if not same:
        sys.exit("the medigan twin does not reproduce the synthmed-1 package's samples")


if __name__ == "__main__":
    main()
