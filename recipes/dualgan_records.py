"""The records of the dual-GAN miniature (recipes/retina-vessel-dualgan): stage I
(retina-vessel-mask-dcgan), stage II (retina-vessel-pix2pix) and the pipeline chaining
them (retina-vessel-dualgan). Used by recipes/records.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/retina-vessel-dualgan/train.py"
SKIMAGE_DATA = "https://github.com/scikit-image/scikit-image/blob/v0.26.0/skimage/data"
AUTHORS = [{"name": "synthmed contributors", "affiliation": "synthmed"}]
CHECKS = ["shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance", "params"]
MASK_ID, PHOTO_ID, PIPE_ID = "retina-vessel-mask-dcgan", "retina-vessel-pix2pix", "retina-vessel-dualgan"
MASK_OUT = {"name": "mask", "kind": "mask", "dims": 2, "shape": [64, 64], "dtype": "uint8", "channels": 1,
            "value_range": [0, 1], "description": "retinal vessel mask, 1 = vessel"}
IMAGE_OUT = {"name": "image", "kind": "image", "dims": 2, "shape": [64, 64], "dtype": "uint8", "channels": 3,
             "value_range": [0, 255], "description": "RGB colour-fundus patch, height x width x channel"}


def _artefact(mid: str) -> dict[str, Any]:
    data = (REPO / "index" / "artefacts" / mid / "1.0.0.zip").read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "media_type": "application/zip",
            "sources": [f"index:artefacts/{mid}/1.0.0.zip"]}


def _metrics() -> dict[str, Any]:
    return json.loads((REPO / "recipes" / "retina-vessel-dualgan" / "metrics.json").read_text())


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
        "status": "active",
        "modality": ["fundus photography", "colour fundus photograph"], "anatomy": ["retina", "eye"],
        "generates": ["vessel mask", "segmentation mask"],
        "use_cases": ["testing", "demonstration", "pipeline stage"],
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


BUILDERS = {MASK_ID: mask_record, PHOTO_ID: photo_record, PIPE_ID: pipeline_record}
