"""Build phantom-lesion (procedural, nothing is learned) as a synthmed-1 package.

    python recipes/phantom-lesion/train.py --out DIR

Named train.py like the other recipes; it only assembles the package (model.py +
config.json, no weights), zips it (sorted entries, fixed timestamps) and measures what a
procedural generator can honestly be measured on: whether the lesions it reports in its
masks are where the image says they are, at the contrast that was asked for.

Writes into DIR: package/, 1.0.0.zip, metrics.json, grid.png (2D samples, top two rows;
lesion outlines in red on the bottom rows; then axial slices of one 3D volume).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "_common"))
import buildlib

VERSION = "1.0.0"


def window(x: np.ndarray, lo: float = -60.0, hi: float = 140.0) -> np.ndarray:
    """CT brain-ish window to uint8."""
    return np.clip((x.astype(np.float64) - lo) / (hi - lo) * 255, 0, 255).round().astype(np.uint8)


def ring(mask: np.ndarray, dilate, k: int = 2) -> np.ndarray:
    d = mask
    for _ in range(k):
        d = dilate(d)
    return d & ~dilate(mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--eval-samples", type=int, default=200)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    for name in ("model.py", "config.json"):
        shutil.copy(HERE / "package" / name, pkg / name)
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)

    sys.path.insert(0, str(pkg))
    import model as pkg_model  # type: ignore

    m = pkg_model.build(pkg, "cpu")
    res: dict[str, dict[str, float]] = {}
    for dims, n, (img_key, mask_key) in ((2, args.eval_samples, ("image", "mask")),
                                        (3, max(args.eval_samples // 10, 5), ("volume", "volume_mask"))):
        for contrast in (40.0, -40.0):
            o = m.sample(list(range(n)), dims=dims, lesion_count=3, contrast_hu=contrast, noise_hu=10)
            diffs, counts, binary = [], [], True
            from scipy import ndimage

            for img, mk in zip(o[img_key], o[mask_key]):
                binary &= bool(np.isin(mk, (0, 1)).all())
                mb = mk.astype(bool)
                lab, k = ndimage.label(mb)
                counts.append(k)
                for j in range(1, k + 1):
                    les = lab == j
                    # interior (eroded) vs a ring just outside, both within the same tissue class
                    inner = ndimage.binary_erosion(les) if les.sum() > 20 else les
                    rg = ring(les, pkg_model._dilate, 3)
                    diffs.append(float(img[inner].mean() - np.median(img[rg])))
            res[f"{dims}d_contrast_{int(contrast)}"] = {
                "n_samples": n, "requested_contrast_hu": contrast,
                "measured_contrast_hu_mean": round(float(np.mean(diffs)), 2),
                "measured_contrast_hu_sd": round(float(np.std(diffs)), 2),
                "lesions_per_sample_mean": round(float(np.mean(counts)), 3),
                "masks_binary": binary,
            }
    metrics = {"model": "phantom-lesion", "version": VERSION, "date": datetime.date.today().isoformat(),
               "method": ("lesion contrast = mean HU inside each connected mask component (eroded by 1 px when "
                          "larger than 20 px) minus the median HU of a 2-px ring just outside it, with lesion_count=3, "
                          "noise_hu=10; lesions touching the ventricles or another tissue lower the agreement"),
               "checks": res,
               "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size}
    buildlib.write_json(out / "metrics.json", metrics)

    o = m.sample(list(range(8)), dims=2)
    imgs = window(o["image"])
    rgb = np.repeat(imgs[..., None], 3, -1)
    outl = rgb[:4].copy()
    for i in range(4):
        mb = o["mask"][i].astype(bool)
        outl[i][pkg_model._dilate(mb) & ~mb] = (255, 0, 0)
    v = m.sample([0], dims=3)
    vol, vm = v["volume"][0], v["volume_mask"][0]
    zs = np.argsort(vm.sum((1, 2)))[::-1][:4] if vm.any() else np.array([16, 28, 36, 44])
    sl = np.stack([np.kron(window(vol[z]), np.ones((2, 2), np.uint8)) for z in sorted(zs)])
    sl = np.repeat(sl[..., None], 3, -1)
    buildlib.save_grid(np.concatenate([rgb[4:8], rgb[:4], outl, sl]), out / "grid.png")
    print(metrics)


if __name__ == "__main__":
    main()
