"""Copy a recipe's build output into the repository and refresh the record.

    python recipes/publish.py ID BUILD_DIR

BUILD_DIR is the --out folder of recipes/ID/train.py (or build.py). Copies
BUILD_DIR/1.0.0.zip -> index/artefacts/ID/1.0.0.zip, BUILD_DIR/metrics.json ->
recipes/ID/metrics.json, BUILD_DIR/grid.png -> docs/img/ID-grid.png, then rewrites
index/models/ID/1.0.0.json from recipes/records.py (sha256 and size of the zip pinned).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = "1.0.0"


def main() -> None:
    model_id, build = sys.argv[1], Path(sys.argv[2])
    sys.path.insert(0, str(REPO / "recipes"))
    from records import version_of  # the version this model is published as

    art = REPO / "index" / "artefacts" / model_id / f"{version_of(model_id)}.zip"
    art.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(build / f"{VERSION}.zip", art)  # the recipes' build file name
    shutil.copy(build / "metrics.json", REPO / "recipes" / model_id / "metrics.json")
    if (build / "grid.png").exists():
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(build / "grid.png", REPO / "docs" / "img" / f"{model_id}-grid.png")
    sys.path.insert(0, str(REPO / "recipes"))
    import records

    records.write(model_id)


if __name__ == "__main__":
    main()
