"""Write held-out real patches of the starter models' training images as PNG folders, to
add as site-local reference sets (`synthmed reference add NAME DIR`).

    python recipes/reference_patches.py --out DIR [-n 500]

- DIR/retina-heldout/: 32x32 patches from the held-out rows (>= 530 of the 2x-downsampled
  retina.jpg) of retina-patch-ddpm's recipe, half vessel, half background, no flips
- DIR/ihc-heldout/: 64x64 crops of the held-out rows (>= 384) of ihc.png (ihc-patch-dcgan)
- DIR/retina-vessel-train/ and DIR/retina-vessel-heldout/: 64x64 fundus patches of the
  dual-GAN miniature's training region (rows < 530 of the 2x-downsampled retina.jpg) and of
  its held-out region (rows >= 530), wholly inside the disc, no flips: the training set and
  the held-out set of a memorisation audit of the dual-GAN's images (`synthmed audit`,
  `synthmed dataset publish --training ... --holdout ...`)

Seeded (numpy default_rng(20261129)): the same files every time, so the same reference
identity on every machine with the same scikit-image data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_common"))
import buildlib  # noqa: E402


def write(folder: Path, patches: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(patches):
        Image.fromarray(p).save(folder / f"{i:05d}.png", optimize=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-n", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(20261129)
    retina = buildlib.load_module("retina_ddpm_train_ref", HERE / "retina-patch-ddpm" / "train.py")
    im, disc, ves = retina.prepare()
    held = retina.patch_index(disc, ves, (retina.SPLIT_ROW, retina.HALF))
    nv = args.n // 2
    v = retina.crops(im, held[retina.VESSEL], rng.choice(len(held[retina.VESSEL]), nv, replace=False), rng, False)
    b = retina.crops(im, held[retina.BACKGROUND], rng.choice(len(held[retina.BACKGROUND]), args.n - nv, replace=False),
                     rng, False)
    write(args.out / "retina-heldout", np.concatenate([v, b]))
    from skimage import data

    ihc = data.immunohistochemistry()[384:]
    ys = rng.integers(0, ihc.shape[0] - 64 + 1, args.n)
    xs = rng.integers(0, ihc.shape[1] - 64 + 1, args.n)
    write(args.out / "ihc-heldout", np.stack([ihc[y:y + 64, x:x + 64] for y, x in zip(ys, xs)]))
    dualgan = buildlib.load_module("retina_dualgan_train_ref", HERE / "retina-vessel-dualgan" / "train.py")
    im, disc, ves = dualgan.prepare()
    regions = {"retina-vessel-train": (0, dualgan.SPLIT_ROW), "retina-vessel-heldout": (dualgan.SPLIT_ROW, dualgan.HALF)}
    for name, rows in regions.items():
        cs = dualgan.corners(disc, rows)
        pick = cs[rng.choice(len(cs), min(args.n, len(cs)), replace=False)]
        write(args.out / name, dualgan.crop_pairs(im, ves, pick, None)[0])
    print(f"wrote {args.n} retina, {args.n} ihc and 2 x {args.n} dual-GAN retina patches under {args.out}")


if __name__ == "__main__":
    main()
