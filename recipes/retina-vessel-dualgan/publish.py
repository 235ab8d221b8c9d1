"""Publish the dual-GAN miniature's newest versions from a build folder of train.py.

    python recipes/retina-vessel-dualgan/publish.py BUILD_DIR

The versions are recipes/dualgan_records.py's TREE_VERSION, PHOTO_VERSION and PIPE_VERSION.
- index/artefacts/retina-vessel-mask-tree/<TREE_VERSION>.zip: BUILD_DIR/tree/package, zipped
  (stage I, the fitted vessel-tree model; when the newest pipeline keeps a published tree,
  BUILD_DIR/tree/package is that zip unpacked, and the byte check below confirms it).
- index/artefacts/retina-vessel-pix2pix/<PHOTO_VERSION>.zip: BUILD_DIR/photo/package plus
  test-inputs/ (four real 64x64 vessel masks of the training region as 0/255 PNGs: the
  model test's inputs, shipped inside the package as the record's array_inputs[0].test).
- index/artefacts/retina-vessel-dualgan/<PIPE_VERSION>.zip: pipeline.json (synthmed-pipeline-1)
  naming both stages by id@version and the sha256 of their zips.
- recipes/retina-vessel-dualgan/metrics.json (BUILD_DIR's) and f1-table.json,
  docs/img/retina-vessel-dualgan-<PIPE_VERSION>-pairs.png, and the three records
  (recipes/dualgan_records.py). Before a new version, the previous metrics.json and
  f1-table.json are kept as metrics-<previous pipeline>.json and f1-table-<...>.json, and the
  previous records' builders read them (so a published record never changes).

A published version is immutable: a zip that already exists with other bytes is refused,
never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "recipes" / "_common"))
sys.path.insert(0, str(REPO / "recipes"))
sys.path.insert(0, str(HERE))
import buildlib  # noqa: E402
import dualgan_records as dr  # noqa: E402


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def place(src_dir: Path, mid: str, version: str) -> Path:
    """Zip src_dir to index/artefacts/<mid>/<version>.zip, refusing to change a published one."""
    dest = REPO / "index" / "artefacts" / mid / f"{version}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / "new.zip"
        buildlib.deterministic_zip(src_dir, new)
        if dest.exists() and sha(dest) != sha(new):
            sys.exit(f"{dest} exists with other bytes: {mid} {version} is published and immutable; "
                     "publish a new version instead (the version constants in recipes/dualgan_records.py)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(new, dest)
    return dest


def test_inputs(folder: Path) -> None:
    """Four real training-region masks (0/255 PNGs), the model test's inputs of stage II."""
    from PIL import Image

    import train  # the recipe: the same data preparation

    _, disc, ves = train.prepare()
    corners = train.corners(disc, (0, train.SPLIT_ROW), stride=64)
    picked = corners[np.random.default_rng(7).choice(len(corners), 4, replace=False)]
    folder.mkdir()
    for i, (y, x) in enumerate(picked):
        Image.fromarray((ves[y:y + 64, x:x + 64] > 0).astype(np.uint8) * 255).save(folder / f"{i:03d}.png")


def main() -> None:
    build = Path(sys.argv[1])
    tree_zip = place(build / "tree" / "package", dr.TREE_ID, dr.TREE_VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo"
        shutil.copytree(build / "photo" / "package", photo)
        if not (photo / "test-inputs").exists():  # (an unpacked published zip has them)
            test_inputs(photo / "test-inputs")
        photo_zip = place(photo, dr.PHOTO_ID, dr.PHOTO_VERSION)
        pipe = Path(tmp) / "pipeline"
        pipe.mkdir()
        spec = {"format": "synthmed-pipeline-1",
                "stages": [{"name": "geometry", "ref": f"{dr.TREE_ID}@{dr.TREE_VERSION}", "sha256": sha(tree_zip),
                            "params": {}},
                           {"name": "photo", "ref": f"{dr.PHOTO_ID}@{dr.PHOTO_VERSION}", "sha256": sha(photo_zip),
                            "params": {}}],
                "wiring": ["geometry.mask -> photo.mask"],
                "outputs": {"image": "photo.image", "mask": "geometry.mask"}}
        (pipe / "pipeline.json").write_text(json.dumps(spec, indent=2) + "\n")
        place(pipe, dr.PIPE_ID, dr.PIPE_VERSION)
    shutil.copy(build / "metrics.json", HERE / "metrics.json")
    buildlib.write_json(HERE / "f1-table.json", dr.f1_table(dr._metrics("newest")))
    shutil.copy(build / "pairs-grid.png", REPO / "docs" / "img" / f"{dr.PIPE_ID}-{dr.PIPE_VERSION}-pairs.png")
    for mid, version in ((dr.TREE_ID, dr.TREE_VERSION), (dr.PHOTO_ID, dr.PHOTO_VERSION),
                         (dr.PIPE_ID, dr.PIPE_VERSION)):
        print(dr.write(mid, version))


if __name__ == "__main__":
    main()
