"""A control for the memorisation audit of the dual-GAN's images: does the audit's DCR test
flag REAL patches of the training region too?

    SYNTHMED_HOME=SITE python recipes/retina-vessel-dualgan/audit_control.py REFS

REFS is the folder `recipes/reference_patches.py --out REFS` wrote (retina-vessel-train/ and
retina-vessel-heldout/). 400 real 64x64 patches of the training region (rows < 530), drawn
with another seed than the audit's training sample, are audited as if a model had made them
(`audit_pictures`, the function `synthmed dataset publish` uses). They fail the DCR test
(published 2026-12-06: 93% closer to the training sample in pixels, 98% in features), so with a
held-out set from another region of the same photograph the test measures the shift between
the regions, not copying: the reason retina-vessel-pairs 1.0.0 was published with
--override-audit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from synthmed.registry.catalog import Catalog
from synthmed.registry.measuring.audit import audit_pictures
from synthmed.registry.measuring.extractors import open_extractor
from synthmed.registry.measuring.reference_sets import open_reference
from synthmed.registry.settings import load_settings

HERE = Path(__file__).resolve().parent


def main() -> None:
    refs = Path(sys.argv[1])
    spec = importlib.util.spec_from_file_location("dualgan_train_control", HERE / "train.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    im, disc, ves = mod.prepare()
    rng = np.random.default_rng(7)
    cs = mod.corners(disc, (0, mod.SPLIT_ROW))
    real = mod.crop_pairs(im, ves, cs[rng.choice(len(cs), 400, replace=False)], None)[0]
    settings = load_settings()
    with Catalog.open(settings.catalog_path) as cat:
        extractor = open_extractor(cat, settings, None)
    audit = audit_pictures(real, list(range(len(real))), open_reference(settings, str(refs / "retina-vessel-train")),
                           extractor, holdout=open_reference(settings, str(refs / "retina-vessel-heldout")))
    print(f"real training-region patches: {audit['verdict']}")
    for reason in audit["reasons"]:
        print(f"  - {reason}")
    keys = ("pixel_closer_to_training", "feature_closer_to_training", "training_near_duplicate_fraction",
            "near_copy_uninformative")
    print({k: audit["numbers"][k] for k in keys})


if __name__ == "__main__":
    main()
