"""Publish the dual-GAN miniature from a build folder of train.py into the repository.

    python recipes/retina-vessel-dualgan/publish.py BUILD_DIR

- index/artefacts/retina-vessel-mask-dcgan/1.0.0.zip: BUILD_DIR/mask/package, zipped.
- index/artefacts/retina-vessel-pix2pix/1.0.0.zip: BUILD_DIR/photo/package plus
  test-inputs/ (four real 64x64 vessel masks of the training region as 0/255 PNGs: the
  model test's inputs, shipped inside the package as the record's array_inputs[0].test).
- index/artefacts/retina-vessel-dualgan/1.0.0.zip: pipeline.json (synthmed-pipeline-1)
  naming both stages by id@version and the sha256 of their zips.
- recipes/retina-vessel-dualgan/metrics.json, docs/img/retina-vessel-dualgan-pairs.png,
  and the three records (recipes/records.py).
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
sys.path.insert(0, str(HERE))
import buildlib  # noqa: E402

MASK_ID, PHOTO_ID, PIPE_ID = "retina-vessel-mask-dcgan", "retina-vessel-pix2pix", "retina-vessel-dualgan"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    build = Path(sys.argv[1])
    art = REPO / "index" / "artefacts"
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # stage I as trained
        (art / MASK_ID).mkdir(parents=True, exist_ok=True)
        buildlib.deterministic_zip(build / "mask" / "package", art / MASK_ID / "1.0.0.zip")
        # stage II with its test inputs
        from PIL import Image

        import train  # the recipe: the same data preparation

        photo = t / "photo"
        shutil.copytree(build / "photo" / "package", photo)
        im, disc, ves = train.prepare()
        corners = train.corners(disc, (0, train.SPLIT_ROW), stride=64)
        rng = np.random.default_rng(7)
        picked = corners[rng.choice(len(corners), 4, replace=False)]
        (photo / "test-inputs").mkdir()
        for i, (y, x) in enumerate(picked):
            Image.fromarray((ves[y:y + 64, x:x + 64] > 0).astype(np.uint8) * 255).save(
                photo / "test-inputs" / f"{i:03d}.png")
        (art / PHOTO_ID).mkdir(parents=True, exist_ok=True)
        buildlib.deterministic_zip(photo, art / PHOTO_ID / "1.0.0.zip")
        # the pipeline
        pipe = t / "pipeline"
        pipe.mkdir()
        spec = {"format": "synthmed-pipeline-1",
                "stages": [{"name": "geometry", "ref": f"{MASK_ID}@1.0.0",
                            "sha256": sha(art / MASK_ID / "1.0.0.zip"), "params": {}},
                           {"name": "photo", "ref": f"{PHOTO_ID}@1.0.0",
                            "sha256": sha(art / PHOTO_ID / "1.0.0.zip"), "params": {}}],
                "wiring": ["geometry.mask -> photo.mask"],
                "outputs": {"image": "photo.image", "mask": "geometry.mask"}}
        (pipe / "pipeline.json").write_text(json.dumps(spec, indent=2) + "\n")
        (art / PIPE_ID).mkdir(parents=True, exist_ok=True)
        buildlib.deterministic_zip(pipe, art / PIPE_ID / "1.0.0.zip")
    shutil.copy(build / "metrics.json", HERE / "metrics.json")
    shutil.copy(build / "pairs-grid.png", REPO / "docs" / "img" / f"{PIPE_ID}-pairs.png")
    sys.path.insert(0, str(REPO / "recipes"))
    import records

    for mid in (MASK_ID, PHOTO_ID, PIPE_ID):
        print(records.write(mid))


if __name__ == "__main__":
    main()
