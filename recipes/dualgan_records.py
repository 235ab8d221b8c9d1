"""The records of the dual-GAN miniature (recipes/retina-vessel-dualgan). Used by
recipes/records.py and recipes/retina-vessel-dualgan/publish.py.

Each published version rebuilds byte for byte from the metrics file it was published with
(PUBLISHED below; tests/test_starter_models.py checks it):
- metrics-1.0.0.json: stage I retina-vessel-mask-dcgan 1.0.0, stage II retina-vessel-pix2pix
  1.0.0 (plain pix2pix), the pipeline retina-vessel-dualgan 1.0.0;
- metrics-1.1.0.json: retina-vessel-mask-tree 1.0.0 (a fitted vessel-tree model) and the
  pipeline 1.1.0 (tree 1.0.0, pix2pix 1.0.0);
- metrics-1.2.0.json: tree 1.1.0 (refitted), pix2pix 1.1.0 (a cVAE-GAN) and the pipeline 1.2.0;
- metrics.json (the newest): pix2pix 1.2.0 (1.1.0's network retrained with the
  mask-consistency hinge) and the pipeline 1.3.0 (tree 1.1.0, pix2pix 1.2.0)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/retina-vessel-dualgan/train.py"
SKIMAGE_DATA = "https://github.com/scikit-image/scikit-image/blob/v0.26.0/skimage/data"
AUTHORS = [{"name": "synthmed contributors", "affiliation": "synthmed"}]
CHECKS = ["shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance", "params"]
MASK_ID, PHOTO_ID, PIPE_ID = "retina-vessel-mask-dcgan", "retina-vessel-pix2pix", "retina-vessel-dualgan"
TREE_ID = "retina-vessel-mask-tree"
#: the newest versions (publish.py writes them; 1.0.0 of the DCGAN, pix2pix and pipeline stay as published)
TREE_VERSION, PHOTO_VERSION, PIPE_VERSION = "1.1.0", "1.2.0", "1.3.0"
#: the pipeline version before the newest (its stages are train.py --baseline's)
PREVIOUS_PIPE = "1.2.0"
SYN, REAL, S2 = ("synthetic pairs (stage I masks -> stage II images)", "real pairs (training region)",
                 "real training masks -> stage II images")
#: the previous version's stages, evaluated in the same run (train.py --baseline)
BASE_SYN, BASE_S2 = ("baseline: synthetic pairs of the previous version's stages",
                     "baseline: real training masks -> the previous version's stage II")
PAPER = {"synthetic": 0.8877, "real": 0.8988,
         "source": "Guibas et al. 2017, arXiv:1709.01872: F1 of a U-Net vessel segmenter on DRIVE test images, "
                   "trained on synthetic vs real pairs"}
MASK_OUT = {"name": "mask", "kind": "mask", "dims": 2, "shape": [64, 64], "dtype": "uint8", "channels": 1,
            "value_range": [0, 1], "description": "retinal vessel mask, 1 = vessel"}
IMAGE_OUT = {"name": "image", "kind": "image", "dims": 2, "shape": [64, 64], "dtype": "uint8", "channels": 3,
             "value_range": [0, 255], "description": "RGB colour-fundus patch, height x width x channel"}

#: what the two stage-I mask models (the DCGAN and the fitted tree) say alike, in record order
MASK_STAGE = {"status": "active", "modality": ["fundus photography", "colour fundus photograph"],
              "anatomy": ["retina", "eye"], "generates": ["vessel mask", "segmentation mask"],
              "use_cases": ["testing", "demonstration", "pipeline stage"]}


def _artefact(mid: str, version: str = "1.0.0") -> dict[str, Any]:
    data = (REPO / "index" / "artefacts" / mid / f"{version}.zip").read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "media_type": "application/zip",
            "sources": [f"index:artefacts/{mid}/{version}.zip"]}


def _metrics(of: str = "1.0.0") -> dict[str, Any]:
    """The recipe's numbers a record was published with: 1.0.0's (metrics-1.0.0.json), the
    second round's ("1.1.0": metrics-1.1.0.json, tree 1.0.0 and pipeline 1.1.0), the third's
    ("1.2.0": metrics-1.2.0.json, tree 1.1.0, pix2pix 1.1.0 and pipeline 1.2.0) or the newest
    ("newest": metrics.json). Each file stays as published with its records."""
    name = "metrics.json" if of == "newest" else f"metrics-{of}.json"
    return json.loads((REPO / "recipes" / "retina-vessel-dualgan" / name).read_text())


def _data(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "datasets": [{"name": "scikit-image sample data: retina.jpg (skimage.data.retina), M. Häggström",
                      "url": f"{SKIMAGE_DATA}/retina.jpg", "license": "CC0-1.0",
                      "size": (f"1 image (1411x1411 RGB), 2x downsampled; {m['training_positions']} 64x64 "
                               "training patch positions above row 530; vessel masks by a vesselness filter"),
                      "type": "public"}],
        "date": m["date"], "recipe": RECIPE, "augmentations": ["random crop", "horizontal flip", "vertical flip"],
        "privacy": "A CC0 photograph published on Wikimedia Commons; no patient identifiers.",
    }


DATA_TEXT = (
    "Training data: skimage.data.retina() (retina.jpg), a fundus photograph of a normal left eye by Mikael Häggström "
    "(Wikimedia Commons), CC0 1.0 per scikit-image's documentation, downsampled 2x to 706x706. Vessel masks by a "
    "vesselness filter (black top-hat, disk radius 6, of the smoothed green channel > 6 grey levels inside the "
    "fundus disc, specks under 30 px removed): they are the filter's idea of vessels, not manual annotations. "
    "64x64 patches wholly inside the disc; training patches lie above row 530, held-out patches below it.")


def _f1_metrics(m: dict[str, Any]) -> list[dict[str, Any]]:
    ev = m["evaluation"]
    table = ev["segmentation_f1"]
    syn = table["synthetic pairs (stage I masks -> stage II images)"]
    real = table["real pairs (training region)"]
    s2 = table["real training masks -> stage II images"]
    how = (f"The same small segmentation network (a two-level U-Net, 8-16-32 channels) trained for {ev['seg_steps']} "
           f"steps of {ev['seg_batch']} patches with flips, once per training set and seed ({ev['seg_seeds']} seeds), "
           f"then its pixel F1 (threshold 0.5, pooled over all pixels) measured on {ev['n_heldout_patches']} held-out "
           f"real patches ({ev['heldout']}) against their vesselness masks. Training sets: {ev['n_synthetic_pairs']} "
           "synthetic pairs (stage I masks from seeds 0.., stage II images of them), "
           f"{ev['n_real_pairs']} real pairs from the training region. Value: mean over seeds "
           f"(min..max {syn['f1_min']}..{syn['f1_max']}); reference: real pairs, mean "
           f"(min..max {real['f1_min']}..{real['f1_max']}). Real training masks with stage II's images gave "
           f"{s2['f1_mean']} (min..max {s2['f1_min']}..{s2['f1_max']}). Computed by {RECIPE} (--stage eval), "
           "recipes/retina-vessel-dualgan/metrics.json.")
    return [{"name": "segmentation F1 on held-out real patches (trained on synthetic pairs)",
             "value": syn["f1_mean"], "better": "higher", "n_samples": int(ev["n_synthetic_pairs"]),
             "extractor": "small U-Net vessel segmenter trained on the generated pairs", "normalised": False,
             "reference": {"name": "the same segmenter trained on real pairs", "value": real["f1_mean"]},
             "source": "measured", "method": how}]


def mask_record() -> dict[str, Any]:
    m = _metrics()
    st = m["stage_mask"]
    vf = m["evaluation"]["vessel_fraction"]
    return {
        "format": "synthmed-record/1", "id": MASK_ID, "version": "1.0.0",
        "title": "DCGAN for 64x64 retinal vessel masks (stage I of the dual-GAN miniature)",
        "summary": "A small DCGAN making 64x64 binary retinal-vessel masks, trained on vesselness masks of "
                   "scikit-image's retina.jpg: the geometry stage of a two-stage (dual-GAN) fundus pipeline.",
        "description": (
            f"Stage I of a miniature of Guibas et al. 2017's dual-GAN pipeline. A DCGAN generator "
            f"({st['params_generator']} parameters, latent 64, BatchNorm) trained {st['steps']} steps of "
            f"{st['batch']} masks ({st['train_seconds'] / 60:.0f} minutes on one CPU core). A demonstration and test "
            "model, not for clinical or research use.\n\n" + DATA_TEXT + "\n\n"
            f"Samples: the masks are blob-like dark-region shapes with ragged edges, rarely the thin branching "
            f"vessel trees of the real masks; their vessel fraction is {vf['generated masks']} against "
            f"{vf['real training masks']} in real training masks. Seeds: the latent of sample i is torch.randn(64) "
            "from torch.Generator().manual_seed(seed i); one network call per sample, BatchNorm statistics stored."),
        **MASK_STAGE,
        "tags": ["starter", "GAN", "DCGAN", "dual-GAN", "64x64", "scikit-image", "cpu", "mask"],
        "architecture": {"family": "gan", "name": "DCGAN"},
        "task": "unconditional",
        "inputs": {"type": "object", "properties": {
            "threshold": {"type": "number", "minimum": 0.05, "maximum": 0.95, "default": 0.5,
                          "description": "cut of the generator's soft mask in [0, 1]"}},
            "additionalProperties": False},
        "outputs": [MASK_OUT],
        "training": _data(m),
        "metrics": _f1_metrics(m),
        "license": "MIT", "authors": AUTHORS,
        "publications": [{"doi": "10.48550/arXiv.1709.01872",
                          "title": "Synthetic Medical Images from Dual Generative Adversarial Networks", "year": 2017}],
        "package": {"format": "synthmed-1", "artefact": _artefact(MASK_ID), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 120, "checks": CHECKS},
        "provenance": {"source": f"trained in the synthmed repository by {RECIPE}"},
    }


def photo_record() -> dict[str, Any]:
    m = _metrics()
    st = m["stage_photo"]
    return {
        "format": "synthmed-record/1", "id": PHOTO_ID, "version": "1.0.0",
        "title": "pix2pix: retinal vessel mask to 64x64 colour fundus patch (stage II of the dual-GAN miniature)",
        "summary": "A small pix2pix (U-Net generator, PatchGAN discriminator) that turns a 64x64 vessel mask into a "
                   "64x64 RGB colour-fundus patch; trained on retina.jpg and its vesselness masks.",
        "description": (
            f"Stage II of a miniature of Guibas et al. 2017's dual-GAN pipeline: a four-level U-Net "
            f"({st['params_generator']} parameters, instance normalisation) trained against a PatchGAN "
            f"discriminator with {st['loss']}, l1_weight = {st['l1_weight']:g} (pix2pix's weighting; the recipe's "
            f"--l1-weight 1 gives the paper's 1:1), {st['steps']} steps of {st['batch']} pairs "
            f"({st['train_seconds'] / 60:.0f} minutes on one CPU core). A demonstration and test model, not for "
            "clinical or research use.\n\n" + DATA_TEXT + "\n\n"
            "Input: array input 'mask' (64x64, vessel where > 0; a 0/255 mask PNG reads as 0/1), one per sample. "
            "The image depends only on the mask: there is no noise input, so the seed does not change it. "
            "Samples: fundus colour and illumination and dark vessel-like structures where the mask says; "
            "fine texture is smooth (L1 dominates the loss)."),
        "status": "active",
        "modality": ["fundus photography", "colour fundus photograph"], "anatomy": ["retina", "eye"],
        "generates": ["fundus patch", "RGB image"],
        "use_cases": ["testing", "demonstration", "pipeline stage", "mask-to-image"],
        "tags": ["starter", "GAN", "pix2pix", "dual-GAN", "64x64", "scikit-image", "cpu", "image-to-image"],
        "architecture": {"family": "gan", "name": "pix2pix (U-Net + PatchGAN)"},
        "task": "mask-to-image",
        "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
        "array_inputs": [{"name": "mask", "kind": "mask", "dims": 2, "shape": [64, 64], "dtype": "uint8",
                          "channels": 1, "value_range": [0, 1], "test": "test-inputs",
                          "description": "retinal vessel mask, 1 (or > 0 in a picture) = vessel"}],
        "outputs": [IMAGE_OUT],
        "training": _data(m),
        "metrics": [],
        "license": "MIT", "authors": AUTHORS,
        "publications": [{"doi": "10.48550/arXiv.1611.07004",
                          "title": "Image-to-Image Translation with Conditional Adversarial Networks", "year": 2017}],
        "package": {"format": "synthmed-1", "artefact": _artefact(PHOTO_ID), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 120,
                 "checks": ["shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance"]},
        "provenance": {"source": f"trained in the synthmed repository by {RECIPE}"},
    }


def pipeline_record() -> dict[str, Any]:
    m = _metrics()
    ev = m["evaluation"]
    table = ev["segmentation_f1"]
    syn = table["synthetic pairs (stage I masks -> stage II images)"]
    real = table["real pairs (training region)"]
    s2 = table["real training masks -> stage II images"]
    return {
        "format": "synthmed-record/1", "id": PIPE_ID, "version": "1.0.0",
        "title": "Dual-GAN miniature: vessel mask and colour fundus patch pairs (64x64), a two-stage pipeline",
        "summary": "A synthmed-pipeline-1 package chaining retina-vessel-mask-dcgan (stage I, geometry) and "
                   "retina-vessel-pix2pix (stage II, photo): each sample is a 64x64 vessel mask with the fundus "
                   "patch made from it.",
        "description": (
            "A miniature of Guibas et al. 2017 ('Synthetic Medical Images from Dual Generative Adversarial "
            "Networks'): stage I makes the vessel geometry, stage II the photorealistic image from it, so image and "
            "mask come out as a pair, for training segmentation networks. Both stages are starter models of this "
            "index, named in the package's pipeline.json by id@version and the sha256 of their packages; the "
            "pipeline runs only if both resolve to exactly those packages and may run on the site. Wiring: "
            "geometry.mask -> photo.mask; outputs: image (photo.image) and mask (geometry.mask). Stage seeds: "
            "stage_seed(seed, name) = the first 4 bytes (big-endian) of sha256('synthmed-pipeline-1:<seed>:<name>')."
            "\n\nSamples (docs/img/retina-vessel-dualgan-pairs.png, generated pairs above real held-out ones): "
            "stage I's masks are blob-like with ragged edges rather than thin branching vessel trees, and stage II "
            "paints them as dark red blotches on a correctly coloured fundus; on real masks stage II draws "
            "convincing vessels. Evaluation as the paper did, in miniature: a small segmenter trained on "
            f"{ev['n_synthetic_pairs']} of these pairs reaches pixel F1 {syn['f1_mean']} on held-out real patches, "
            f"against {real['f1_mean']} trained on real pairs and {s2['f1_mean']} trained on real masks with stage "
            "II's images; the ground truth is the vesselness filter's, not manual annotation (see the metric). "
            "A demonstration and test model, not for clinical or research use."),
        "status": "active",
        "modality": ["fundus photography", "colour fundus photograph"], "anatomy": ["retina", "eye"],
        "generates": ["fundus patch", "vessel mask", "image and mask pairs", "RGB image"],
        "use_cases": ["testing", "demonstration", "segmentation training data"],
        "tags": ["starter", "GAN", "dual-GAN", "pipeline", "pix2pix", "DCGAN", "64x64", "scikit-image", "cpu"],
        "architecture": {"family": "gan", "name": "dual GAN (DCGAN masks, pix2pix images)"},
        "task": "unconditional",
        "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
        "outputs": [IMAGE_OUT, {**MASK_OUT, "segments": "image"}],
        "training": _data(m),
        "metrics": _f1_metrics(m),
        "license": "MIT", "authors": AUTHORS,
        "publications": [{"doi": "10.48550/arXiv.1709.01872",
                          "title": "Synthetic Medical Images from Dual Generative Adversarial Networks", "year": 2017}],
        "package": {"format": "synthmed-pipeline-1", "artefact": _artefact(PIPE_ID), "entry_point": "pipeline.json",
                    "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 180,
                 "checks": ["shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance"]},
        "provenance": {"source": f"trained in the synthmed repository by {RECIPE}"},
    }





# ---------------------------------------------------------------- the newest versions


def _run_stats(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in runs) / len(runs), 4) for k in ("precision", "recall")}


def f1_table(m: dict[str, Any]) -> dict[str, Any]:
    """The segmentation-F1 table of the newest pipeline with the previous versions' and the
    paper's figures beside it (f1-table.json: for a dataset card)."""
    ev = m["evaluation"]
    tab = ev["segmentation_f1"]

    def row(t: dict[str, Any]) -> dict[str, Any]:
        return {"f1_mean": t["f1_mean"], "f1_min": t["f1_min"], "f1_max": t["f1_max"], **_run_stats(t["runs"]),
                "f1_per_seed": [r["f1"] for r in t["runs"]]}

    def published(version: str) -> dict[str, Any]:
        t = _metrics(version)["evaluation"]["segmentation_f1"]
        return {"pipeline": f"{PIPE_ID}@{version}", "synthetic_trained": t[SYN]["f1_mean"],
                "real_trained": t[REAL]["f1_mean"], "real_masks_through_stage_ii": t[S2]["f1_mean"]}

    out = {
        "pipeline": f"{PIPE_ID}@{PIPE_VERSION}",
        "stages": {"geometry": f"{TREE_ID}@{TREE_VERSION}", "photo": f"{PHOTO_ID}@{PHOTO_VERSION}"},
        "synthetic_trained": row(tab[SYN]),
        "real_trained": row(tab[REAL]),
        "real_masks_through_stage_ii": row(tab[S2]),
        "gap_real_minus_synthetic": round(tab[REAL]["f1_mean"] - tab[SYN]["f1_mean"], 4),
        "target": "synthetic-trained F1 within 0.03 of the real-trained one (issue #24)",
        "target_met": bool(tab[REAL]["f1_mean"] - tab[SYN]["f1_mean"] <= 0.03),
    }
    if BASE_SYN in tab:
        out["previous_version_same_run"] = {
            "pipeline": f"{PIPE_ID}@{PREVIOUS_PIPE}", "synthetic_trained": row(tab[BASE_SYN]),
            "real_masks_through_stage_ii": row(tab[BASE_S2])}
    out["previous_versions_as_published"] = [published("1.2.0"), published("1.1.0"), published("1.0.0")]
    return {**out, "paper": PAPER, "how_measured": _how(ev)}


def _how(ev: dict[str, Any]) -> str:
    return (f"The same small segmentation network (a two-level U-Net, 8-16-32 channels) trained {ev['seg_steps']} "
            f"steps of {ev['seg_batch']} patches with flips on each training set, once per seed ({ev['seg_seeds']} "
            f"seeds); pixel F1, precision and recall (threshold 0.5, pooled over all pixels) on "
            f"{ev['n_heldout_patches']} held-out real patches ({ev['heldout']}) against their vesselness masks. "
            f"Training sets of {ev['n_synthetic_pairs']} pairs each: synthetic (stage I masks from "
            + ev.get("synthetic_seeds", f"seeds 0..{ev['n_synthetic_pairs'] - 1}")
            + ", stage II's images of them), real pairs from the training region, and "
            f"real training masks with stage II's images"
            + ("; in the same run, the previous version's synthetic pairs and real masks through its stage II "
               "(--baseline)" if ev.get("baseline") else "")
            + f". Ground truth is the vesselness filter's, not manual "
            f"annotation; one photograph; CPU minutes, not the paper's DRIVE setting. Computed by {RECIPE} "
            "(--stage eval), recipes/retina-vessel-dualgan/metrics.json.")


def _f1_metric(m: dict[str, Any]) -> list[dict[str, Any]]:
    ev = m["evaluation"]
    tab = ev["segmentation_f1"]
    syn, real, s2 = tab[SYN], tab[REAL], tab[S2]
    how = (_how(ev) + f" Value: synthetic-trained mean over seeds (min..max {syn['f1_min']}..{syn['f1_max']}); "
           f"reference: real-trained mean (min..max {real['f1_min']}..{real['f1_max']}); real masks through "
           f"stage II: {s2['f1_mean']} (min..max {s2['f1_min']}..{s2['f1_max']}). The paper: {PAPER['synthetic']} "
           f"synthetic against {PAPER['real']} real.")
    return [{"name": "segmentation F1 on held-out real patches (trained on synthetic pairs)",
             "value": syn["f1_mean"], "better": "higher", "n_samples": int(ev["n_synthetic_pairs"]),
             "extractor": "small U-Net vessel segmenter trained on the generated pairs", "normalised": False,
             "reference": {"name": "the same segmenter trained on real pairs", "value": real["f1_mean"]},
             "source": "measured", "method": how}]


def _shape_metric(m: dict[str, Any]) -> list[dict[str, Any]]:
    import sys

    sys.path.insert(0, str(REPO / "recipes" / "retina-vessel-dualgan"))
    import tree_fit  # the distance the fit minimised

    st = m["stage_tree"]
    real, fit = st["real_stats"], st["fitted_stats"]
    parts = ", ".join(f"{k} {fit[k]:.3g} (real {real[k]:.3g})" for k in real)
    return [{"name": "mask-statistics distance to real training masks",
             "value": round(tree_fit.distance(fit, real), 4),
             "better": "lower", "n_samples": 1000, "normalised": False,
             "extractor": "12 shape statistics of binary vessel masks (recipes/retina-vessel-dualgan/tree_fit.py)",
             "source": "measured",
             "method": ("Weighted sum over 12 statistics of the squared relative difference between 1000 generated masks "
                        f"(seeds 0..999) and {st['n_real_masks']} random real training masks, the quantity the fit "
                        f"minimised (on other seeds). Statistics, generated (real): {parts}.")}]


#: what each fitted tree version's masks look like, as fitted (the record's description says it)
TREE_LOOKS = {
    "1.0.0": ("as fitted, the masks are mostly straight crossing vessels with few branches, straighter and more "
              "uniform in width than real vessels, and few thin vessels end inside a patch (see the metric's "
              "statistics)"),
    "1.1.0": ("fitted by a longer search (1.0.0's bounds, 300 candidates), the masks carry wide vessels that shed "
              "thinner branches: the width percentiles above the median and the bending match the real masks, "
              "though the median width stays above the real one and thin vessels still end inside a patch less "
              "often than real ones (see the metric's statistics)"),
}


#: the recipe's options each tree version was fitted with
TREE_COMMAND = {"1.0.0": "--stage tree",
                "1.1.0": "--stage tree --tree-random 100 --tree-local 200 --tree-samples 120"}


def tree_record(version: str | None = None) -> dict[str, Any]:
    """The fitted vessel-tree model's record: 1.0.0 (metrics-1.1.0.json) or 1.1.0
    (metrics-1.2.0.json), as published."""
    import sys

    sys.path.insert(0, str(REPO / "recipes" / "retina-vessel-dualgan"))
    import tree_fit

    version = version or TREE_VERSION
    m = _metrics({"1.0.0": "1.1.0", "1.1.0": "1.2.0"}[version])
    st = m["stage_tree"]
    p = st["params"]
    fixed = tree_fit.FIXED
    fixed_text = "".join(f"{k} fixed at {v:g}; " for k, v in fixed.items())
    vf = m["evaluation"]["vessel_fraction"]
    return {
        "format": "synthmed-record/1", "id": TREE_ID, "version": version,
        "title": "Fitted vessel-tree model for 64x64 retinal vessel masks (stage I of the dual-GAN miniature)",
        "summary": "A stochastic branching vessel-tree model whose parameters were fitted to vesselness masks of "
                   "scikit-image's retina.jpg: 64x64 binary retinal-vessel masks, the geometry stage of a two-stage "
                   "fundus pipeline. Replaces the DCGAN stage I (retina-vessel-mask-dcgan), which drew blobs.",
        "description": (
            "Stage I of the dual-GAN miniature, second form. The DCGAN of retina-vessel-mask-dcgan 1.0.0 drew "
            "blob-like masks, not vessel trees; this model draws vessels by construction (smooth tapering "
            "curves that may branch) and learns their statistics from the data. Each sample is the centre 64x64 window of a 192x192 canvas on which "
            f"Poisson({p['roots']:.2f}) vessels grow along a per-sample main direction (spread {p['spread']:.2f} "
            f"rad): smooth random walks (AR(1) turning rate, sd {p['turn_sd']:.4f}), log-normal widths "
            f"(median {math.exp(p['width_mu']):.2f} px) tapering {p['taper']:.4f} per px, branching "
            f"{p['branch_rate']:.4f} per px while wider than {p['branch_min_width']:.2f} px, ending below "
            f"{p['min_width']:.2f} px. {len(p) - len(fixed)} of its {len(p)} parameters were fitted ({fixed_text}{RECIPE} {TREE_COMMAND[version]}, "
            f"recipes/retina-vessel-dualgan/tree_fit.py) by a seeded search of {st['candidates']} candidates "
            f"minimising the distance between 12 shape statistics of generated and {st['n_real_masks']} real "
            f"training masks (vessel fraction, widths, skeleton length, branch and end points, bending): a "
            f"method-of-moments fit, {st['cpu_seconds']:.0f} CPU seconds on one thread. Vessel fraction "
            f"{vf['generated masks']} against {vf['real training masks']} in real training masks; {TREE_LOOKS[version]}. "
            "A demonstration and test model, not for clinical "
            "or research use.\n\n" + DATA_TEXT + "\n\n"
            "Seeds: sample i is drawn from numpy.random.default_rng(seed i) alone (numpy only, no network), so it "
            "does not depend on the batch or the device. Parameter width_scale (0.5..2) multiplies every width."),
        **MASK_STAGE,
        "tags": ["starter", "procedural", "vessel tree", "dual-GAN", "64x64", "scikit-image", "cpu", "mask"],
        "architecture": {"family": "procedural", "name": "branching vessel-tree model, parameters fitted to data"},
        "task": "unconditional",
        "inputs": {"type": "object", "properties": {
            "width_scale": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0,
                            "description": "multiplies every vessel width"}},
            "additionalProperties": False},
        "outputs": [MASK_OUT],
        "training": _data(m),
        "metrics": _shape_metric(m) + _f1_metric(m),
        "license": "MIT", "authors": AUTHORS,
        "publications": [{"doi": "10.48550/arXiv.1709.01872",
                          "title": "Synthetic Medical Images from Dual Generative Adversarial Networks", "year": 2017}],
        "package": {"format": "synthmed-1", "artefact": _artefact(TREE_ID, version), "entry_point": "model:build",
                    "requirements": ["numpy>=1.24"], "python": ">=3.10", "devices": ["cpu"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 120, "checks": CHECKS},
        "provenance": {"source": f"fitted in the synthmed repository by {RECIPE} --stage tree"},
    }


def pipeline_record_v2() -> dict[str, Any]:
    rec = pipeline_record()
    m = _metrics("1.1.0")
    tab = m["evaluation"]["segmentation_f1"]
    syn, real, s2 = tab[SYN], tab[REAL], tab[S2]
    first = _metrics()["evaluation"]["segmentation_f1"]
    rec.update({
        "version": "1.1.0",
        "summary": (f"A synthmed-pipeline-1 package chaining {TREE_ID} (stage I, a fitted vessel-tree model) and "
                    f"{PHOTO_ID} 1.0.0 (stage II, pix2pix): each sample is a 64x64 vessel mask with the "
                    "fundus patch made from it."),
        "description": (
            "A miniature of Guibas et al. 2017 ('Synthetic Medical Images from Dual Generative Adversarial "
            "Networks'): stage I makes the vessel geometry, stage II the photorealistic image from it, so image and "
            f"mask come out as a pair, for training segmentation networks. Stages: {TREE_ID}@1.0.0 (a "
            "vessel-tree model whose parameters were fitted to the training masks, drawing mostly straight crossing "
            f"vessels; it replaces 1.0.0's DCGAN, which drew blobs) and {PHOTO_ID}@1.0.0 (pix2pix, as in 1.0.0), named in the "
            + WIRING_TEXT +
            f"\n\nEvaluation as the paper did, in miniature: a small segmenter trained on {len(syn['runs'])} seeds "
            f"of 1000 of these pairs reaches pixel F1 {syn['f1_mean']} on held-out real patches, against "
            f"{real['f1_mean']} trained on real pairs and {s2['f1_mean']} trained on real masks with stage II's "
            f"images (1.0.0: {first[SYN]['f1_mean']}, {first[REAL]['f1_mean']}, {first[S2]['f1_mean']}; the paper: "
            f"{PAPER['synthetic']} against {PAPER['real']}); the ground truth is the vesselness filter's, not manual "
            "annotation (see the metric). Pictures: docs/img/retina-vessel-dualgan-1.1.0-pairs.png. "
            "A demonstration and test model, not for clinical or research use."),
        "architecture": {"family": "gan", "name": "dual-stage: fitted vessel-tree masks, pix2pix images"},
        "tags": ["starter", "GAN", "dual-GAN", "pipeline", "pix2pix", "vessel tree", "64x64", "scikit-image", "cpu"],
        "training": _data(m),
        "metrics": _f1_metric(m),
        "package": {**rec["package"], "artefact": _artefact(PIPE_ID, "1.1.0")},
    })
    return rec


WIRING_TEXT = (
    "package's pipeline.json by id@version and the sha256 of their packages; the "
    "pipeline runs only if both resolve to exactly those packages and may run on the site. Wiring: "
    "geometry.mask -> photo.mask; outputs: image (photo.image) and mask (geometry.mask). Stage seeds: "
    "stage_seed(seed, name) = the first 4 bytes (big-endian) of sha256('synthmed-pipeline-1:<seed>:<name>').")


def _seg_metric(name: str, t: dict[str, Any], ev: dict[str, Any], what: str) -> dict[str, Any]:
    """A record metric from one row of the evaluation's segmentation table."""
    pr = _run_stats(t["runs"])
    return {"name": name, "value": t["f1_mean"], "better": "higher", "n_samples": int(ev["n_synthetic_pairs"]),
            "extractor": "small U-Net vessel segmenter", "normalised": False, "source": "measured",
            "method": (_how(ev) + f" {what} Mean over {len(t['runs'])} seeds (min..max {t['f1_min']}..{t['f1_max']}; "
                       f"precision {pr['precision']}, recall {pr['recall']}).")}


def _cvae_photo_record(version: str, m: dict[str, Any], summary: str, form: str, consistency: str,
                       previous: str, places: int | None = 4) -> dict[str, Any]:
    """A cVAE-GAN stage II's record (1.1.0, 1.2.0) from the metrics file it was published with:
    ``form`` names which form of stage II it is, ``consistency`` describes the consistency
    term (or is empty), ``previous`` is the stage II the same run's baseline painted with; F1
    figures print to ``places`` decimals (None: as stored, as 1.1.0's record has them)."""
    rec = photo_record()

    def f(v: float) -> str:
        return str(v) if places is None else f"{v:.{places}f}"

    st, ev = m["stage_photo"], m["evaluation"]
    tab = ev["segmentation_f1"]
    s2, b_s2, real = tab[S2], tab[BASE_S2], tab[REAL]
    rec.update({
        "version": version,
        "title": "cVAE-GAN: retinal vessel mask to 64x64 colour fundus patch (stage II of the dual-GAN miniature)",
        "summary": summary,
        "description": (
            f"Stage II of the dual-GAN miniature, {form}. A four-level U-Net "
            f"({st['params_generator']} parameters, instance normalisation) whose decoder upsamples by nearest "
            "neighbour and a 3x3 convolution (1.0.0's transposed convolutions left a checkerboard in its images), "
            f"with a code of {st['z_dim']} numbers broadcast over the mask: the patch's global appearance "
            "(brightness, colour, texture) that the mask does not determine. Trained as BicycleGAN's cVAE-GAN half "
            "(Zhu et al. 2017): an encoder gave the code of each real training patch, and a PatchGAN discriminator "
            f"judged the images of encoded and of random codes; loss {st['loss']}, l1_weight {st['l1_weight']:g}, "
            f"kl_weight {st['kl_weight']:g}, tophat_weight {st['tophat_weight']:g} (the mask filter's response, in "
            "grey levels, matched to the real patch's, so vessel edges fade as the real ones do where the filter "
            f"draws the mask's boundary){consistency}; {st['steps']} steps of {st['batch']} pairs "
            f"({st['cpu_seconds'] / 60:.0f} CPU minutes on one thread). What it is worth: a small segmenter trained "
            f"on real training masks painted by this model reaches F1 {f(s2['f1_mean'])} on held-out real patches, "
            f"against {f(b_s2['f1_mean'])} painted by {previous} and {f(real['f1_mean'])} on the real patches themselves "
            "(same run, see the metric). A demonstration and test model, not for clinical or research use.\n\n"
            + DATA_TEXT + "\n\n"
            "Input: array input 'mask' (64x64, vessel where > 0; a 0/255 mask PNG reads as 0/1), one per sample. "
            f"The code of sample i is numpy.random.default_rng(seed i).standard_normal({st['z_dim']}) as float32: "
            "the same mask and seed give the same patch, another seed another appearance; one network call per "
            "sample, so a sample does not depend on its batch, and a warm-up call when the model is built, so the "
            "first sample of a process is the same as any later one (without it the first forward pass in a "
            "process sometimes differed by 1 grey level in a few pixels)."),
        "architecture": {"family": "gan", "name": "cVAE-GAN (U-Net + PatchGAN, pix2pix with an appearance code)"},
        "tags": ["starter", "GAN", "pix2pix", "cVAE-GAN", "dual-GAN", "64x64", "scikit-image", "cpu",
                 "image-to-image"],
        "training": _data(m),
        "metrics": [_seg_metric("segmentation F1 on held-out real patches (trained on real masks painted by this "
                                "model)", s2, ev, "Training set: real training masks with this model's images.")
                    | {"reference": {"name": "the same segmenter trained on the real patches of those masks",
                                     "value": real["f1_mean"]}}],
        "publications": [{"doi": "10.48550/arXiv.1611.07004",
                          "title": "Image-to-Image Translation with Conditional Adversarial Networks", "year": 2017},
                         {"doi": "10.48550/arXiv.1711.11586",
                          "title": "Toward Multimodal Image-to-Image Translation", "year": 2017}],
        "package": {**rec["package"], "artefact": _artefact(PHOTO_ID, version)},
    })
    return rec


def photo_record_v2() -> dict[str, Any]:
    """retina-vessel-pix2pix 1.1.0: the cVAE-GAN stage II (metrics-1.2.0.json)."""
    return _cvae_photo_record(
        "1.1.0", _metrics("1.2.0"),
        "pix2pix with a per-sample appearance code (a conditional VAE-GAN) that turns a 64x64 vessel mask into a "
        "64x64 RGB colour-fundus patch whose vessel edges fade as real ones do; trained on retina.jpg and its "
        "vesselness masks. The seed chooses the patch's appearance.",
        "second form (1.0.0 was plain pix2pix)", "", "1.0.0", places=None)


def _tree_pipeline_record(version: str, m: dict[str, Any], tree: str, photo: str, tree_text: str, photo_text: str,
                          previous: str, places: int | None = 4) -> dict[str, Any]:
    """A pipeline record of the refitted tree and a cVAE-GAN stage II (1.2.0, 1.3.0) from the
    metrics file it was published with: ``tree``/``photo`` are the stage versions, the texts
    say what each stage is, ``previous`` is the pipeline version of the same run's baseline;
    F1 figures print to ``places`` decimals (None: as stored, as 1.2.0's record has them)."""
    rec = pipeline_record_v2()
    ev = m["evaluation"]
    tab = ev["segmentation_f1"]
    syn, real, s2, b_syn, b_s2 = tab[SYN], tab[REAL], tab[S2], tab[BASE_SYN], tab[BASE_S2]
    gap = real["f1_mean"] - syn["f1_mean"]

    def f(v: float) -> str:
        return str(v) if places is None else f"{v:.{places}f}"
    rec.update({
        "version": version,
        "summary": (f"A synthmed-pipeline-1 package chaining {TREE_ID} {tree} (stage I, a fitted vessel-tree "
                    f"model) and {PHOTO_ID} {photo} (stage II, a cVAE-GAN): each sample is a 64x64 vessel "
                    "mask with the fundus patch made from it."),
        "description": (
            "A miniature of Guibas et al. 2017 ('Synthetic Medical Images from Dual Generative Adversarial "
            "Networks'): stage I makes the vessel geometry, stage II the photorealistic image from it, so image and "
            f"mask come out as a pair, for training segmentation networks. Stages: {TREE_ID}@{tree} ({tree_text}) "
            f"and {PHOTO_ID}@{photo} ({photo_text}), named in the " + WIRING_TEXT +
            f"\n\nEvaluation as the paper did, in miniature: a small segmenter trained on 1000 of these pairs "
            f"reaches pixel F1 {f(syn['f1_mean'])} on held-out real patches (mean of {len(syn['runs'])} seeds), "
            f"against {f(real['f1_mean'])} trained on real pairs (a gap of {gap:.3f}) and {f(s2['f1_mean'])} trained "
            f"on real masks with stage II's images; {previous}'s stages in the same run: {f(b_syn['f1_mean'])} and "
            f"{f(b_s2['f1_mean'])}; the paper: {PAPER['synthetic']} against {PAPER['real']}. The ground truth is the "
            "vesselness filter's, not manual annotation (see the metric). Pictures: "
            f"docs/img/retina-vessel-dualgan-{version}-pairs.png. A demonstration and test model, not for clinical "
            "or research use."),
        "architecture": {"family": "gan", "name": "dual-stage: fitted vessel-tree masks, cVAE-GAN images"},
        "tags": ["starter", "GAN", "dual-GAN", "pipeline", "pix2pix", "cVAE-GAN", "vessel tree", "64x64",
                 "scikit-image", "cpu"],
        "training": _data(m),
        "metrics": _f1_metric(m),
        "package": {**rec["package"], "artefact": _artefact(PIPE_ID, version)},
    })
    return rec


def pipeline_record_v3() -> dict[str, Any]:
    """retina-vessel-dualgan 1.2.0: the refitted tree and the cVAE-GAN stage II (metrics-1.2.0.json)."""
    return _tree_pipeline_record(
        "1.2.0", _metrics("1.2.0"), "1.1.0", "1.1.0",
        "the vessel-tree model refitted by a longer search: wide vessels shedding thinner branches",
        "pix2pix with a per-sample appearance code, vessel edges matched to the mask filter's", "1.1.0", places=None)


def photo_record_v3() -> dict[str, Any]:
    """retina-vessel-pix2pix 1.2.0: 1.1.0's cVAE-GAN retrained with the mask-consistency
    hinge on every generated image (metrics.json)."""
    m = _metrics("newest")
    st, ag = m["stage_photo"], m["evaluation"]["mask_filter_agreement"]
    sides = ("vessel pixels above and background pixels below" if st["consistency_sides"] == "both"
             else "background pixels below")
    consistency = (
        f", plus consistency_weight {st['consistency_weight']:g} x a hinge on the same filter's response of the "
        f"encoded and of the random code's image: {sides} the mask's threshold (6 grey levels) by a margin of 1, "
        "as the mask says. 1.1.0's codes painted vessel-like dark structures where the mask has none: on real "
        f"training masks, {1 - ag[BASE_S2]['precision']:.0%} of the pixels over the filter's threshold lay outside "
        f"the mask, against {1 - ag[REAL]['precision']:.0%} in the real patches and "
        f"{1 - ag[S2]['precision']:.0%} in this model's images; trained on such images, a segmenter learns to pass "
        "faint vessels by")
    return _cvae_photo_record(
        PHOTO_VERSION, m,
        "pix2pix with a per-sample appearance code (a conditional VAE-GAN) that turns a 64x64 vessel mask into a "
        "64x64 RGB colour-fundus patch with vessels where the mask has them and nowhere else, their edges fading "
        "as real ones do; trained on retina.jpg and its vesselness masks. The seed chooses the patch's appearance.",
        "third form (1.0.0 was plain pix2pix; 1.1.0 is this network trained without the consistency term)",
        consistency, "1.1.0")


def pipeline_record_v4() -> dict[str, Any]:
    """retina-vessel-dualgan 1.3.0: tree 1.1.0 and the consistency-trained stage II (metrics.json)."""
    return _tree_pipeline_record(
        PIPE_VERSION, _metrics("newest"), TREE_VERSION, PHOTO_VERSION,
        "the vessel-tree model fitted by a longer search: wide vessels shedding thinner branches, as in 1.2.0",
        "pix2pix with a per-sample appearance code, trained so that the mask filter finds vessels where the mask "
        "has them and nowhere else", PREVIOUS_PIPE)


#: every published version of each id and the builder that rebuilds its record byte for byte
#: (tests/test_starter_models.py checks them; 1.0.0 from metrics-1.0.0.json, tree 1.0.0 and pipeline 1.1.0 from
#: metrics-1.1.0.json, the newest from metrics.json)
PUBLISHED: dict[tuple[str, str], Any] = {
    (MASK_ID, "1.0.0"): mask_record, (PHOTO_ID, "1.0.0"): photo_record, (PIPE_ID, "1.0.0"): pipeline_record,
    (TREE_ID, "1.0.0"): lambda: tree_record("1.0.0"), (PIPE_ID, "1.1.0"): pipeline_record_v2,
    (TREE_ID, "1.1.0"): lambda: tree_record("1.1.0"), (PHOTO_ID, "1.1.0"): photo_record_v2,
    (PIPE_ID, "1.2.0"): pipeline_record_v3,
    (PHOTO_ID, PHOTO_VERSION): photo_record_v3, (PIPE_ID, PIPE_VERSION): pipeline_record_v4,
}
#: the newest version of each id
NEWEST = {MASK_ID: "1.0.0", TREE_ID: TREE_VERSION, PHOTO_ID: PHOTO_VERSION, PIPE_ID: PIPE_VERSION}
#: the newest record of each id (recipes/records.py writes these)
BUILDERS = {mid: PUBLISHED[(mid, v)] for mid, v in NEWEST.items()}


def write(mid: str, version: str) -> Path:
    """Write index/models/<mid>/<version>.json from its builder."""
    if (mid, version) not in PUBLISHED:
        raise ValueError(f"{mid}: no builder for version {version}")
    rec = PUBLISHED[(mid, version)]()
    path = REPO / "index" / "models" / mid / f"{version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
