"""The index records of the starter models, written from code so that what they say
(sha256, size, metrics) always comes from the committed artefacts and metrics files.

    python recipes/records.py [ID ...]     # rewrite index/models/ID/1.0.0.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VERSION = "1.0.0"
#: a model whose package changed after its first publication gets a new version (a merged
#: version is immutable); retina-patch-ddpm 1.0.1 is 1.0.0's weights with the package's
#: batch-invariance note corrected, 1.0.0 stays in the index as it was first published; the
#: dual-GAN's newest versions are in recipes/dualgan_records.py (NEWEST)
VERSIONS = {"retina-patch-ddpm": "1.0.1"}


def version_of(model_id: str) -> str:
    import dualgan_records  # one owner of the dual-GAN's versions

    return dualgan_records.NEWEST.get(model_id) or VERSIONS.get(model_id, VERSION)
SKIMAGE_DATA = "https://github.com/scikit-image/scikit-image/blob/v0.26.0/skimage/data"
AUTHORS = [{"name": "synthmed contributors", "affiliation": "synthmed"}]
CHECKS = ["shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance", "params"]
RGB_OUT = {"kind": "image", "dims": 2, "dtype": "uint8", "channels": 3, "value_range": [0, 255]}


def artefact(model_id: str) -> dict[str, Any]:
    path = REPO / "index" / "artefacts" / model_id / f"{version_of(model_id)}.zip"
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "media_type": "application/zip",
            "sources": [f"index:artefacts/{model_id}/{version_of(model_id)}.zip"]}


def metrics_file(model_id: str) -> dict[str, Any]:
    return json.loads((REPO / "recipes" / model_id / "metrics.json").read_text())


def patch_metrics(m: dict[str, Any], model_key: str, what: str) -> list[dict[str, Any]]:
    fd, cs = m["patch_stats_frechet"], m["channel_stats_l2"]
    base_fd = ", ".join(f"{k} {v:.2f}" for k, v in fd.items() if k != model_key)
    base_cs = ", ".join(f"{k} {v:.2f}" for k, v in cs.items() if k != model_key)
    n = int(m["n_generated"])
    return [
        {"name": "patch-stats Fréchet distance", "value": fd[model_key], "better": "lower", "n_samples": n,
         "extractor": "27 hand-crafted patch statistics (recipes/_common/buildlib.py: patch_features)",
         "normalised": False, "reference": {"name": "real training patches vs held-out patches", "value": fd["train_patches"]},
         "source": "measured",
         "method": (f"Fréchet distance between Gaussians fitted to hand-crafted features (per-channel mean, std, "
                    f"10/50/90th percentiles, mean |gradient| in x and y; grey-level spectral power in 4 radial "
                    f"bands, mean |Laplacian|, mean R-B) of {n} generated {what} and {m['n_heldout']} real patches "
                    f"from the held-out region ({m['heldout_region']}); every feature z-scored with the held-out "
                    f"set's mean and std. Not an FID: no Inception network, and much coarser: it sees colour, "
                    f"contrast and frequency content, not shapes. Same distance for other sets: {base_fd}. "
                    f"Computed by the recipe, recipes/{m['model']}/metrics.json.")},
        {"name": "channel mean/std L2 distance", "value": cs[model_key], "better": "lower", "n_samples": n,
         "extractor": "per-channel mean and standard deviation of pixel values (0..255)", "normalised": False,
         "reference": {"name": "real training patches vs held-out patches", "value": cs["train_patches"]},
         "source": "measured",
         "method": (f"Euclidean distance between the 6-vectors (R, G, B mean; R, G, B std over all pixels) of "
                    f"{n} generated {what} and {m['n_heldout']} held-out real patches, in 0..255 units. "
                    f"Same distance for other sets: {base_cs}.")},
    ]


def ihc() -> dict[str, Any]:
    mid = "ihc-patch-dcgan"
    m = metrics_file(mid)
    return {
        "format": "synthmed-record/1", "id": mid, "version": version_of(mid),
        "title": "DCGAN for 64x64 immunohistochemistry patches of colonic glands",
        "summary": (f"A small DCGAN ({m['params_generator'] / 1e6:.1f}M generator parameters) making 64x64 RGB patches "
                    "that look like scikit-image's ihc.png: colonic glands with brown DAB (FHL2) staining over a blue "
                    "haematoxylin counterstain."),
        "description": (
            f"A starter model that runs anywhere: the weights ship inside the index (a "
            f"{m['zip_size'] / 1e6:.1f} MB zip, float16), inference is a plain torch forward pass on CPU or CUDA. It was "
            f"trained for {m['steps']} steps of {m['batch']} random 64x64 crops (with flips and rot90) of ONE 512x512 "
            f"image, rows 0..383, in {m['train_seconds'] / 60:.0f} minutes on one CPU core; rows 384..511 were held out "
            "for evaluation. Generator: a transposed convolution to 4x4, then nearest-upsample + 3x3 convolution "
            "stages to 64x64 (no checkerboard artefacts); discriminator with spectral normalisation; hinge loss; "
            "exponential moving average of the generator's weights. The samples have the stain colours and the "
            "coarse texture of the image (brown DAB epithelium, pale stroma with blue nuclei) but not its crisp "
            "nuclei and membranes; the hand-crafted patch-statistics distance below is coarse, and the model being "
            "near the real-vs-real value says the statistics match, not that the patches pass for real ones. "
            "It is a demonstration and test model for synthmed (search, generation, mirroring, "
            "benchmarks), not a model of IHC histology in general, and not for any clinical or research use "
            "beyond that.\n\n"
            "Training data: skimage.data.immunohistochemistry() (ihc.png), shipped in scikit-image's wheel; "
            "acquired at the Center for Microscopy And Molecular Imaging (CMMI). scikit-image documents it as "
            "'No known copyright restrictions'; no licence grant is stated, so the dataset licence is recorded "
            "as NOASSERTION. scikit-image's code is BSD-3-Clause; its data README names no licences.\n\n"
            "Inference detail: the training batch norms are folded into the convolutions (population "
            "statistics re-estimated on 4096 latents), so a sample never depends on its batch. Each sample's "
            "latent is torch.randn(100) from torch.Generator().manual_seed(seed). Bare API for benchmarks: "
            "m.latents(seeds) -> (N, 100, 1, 1); m.forward_batch(z) -> (N, 3, 64, 64) float in [-1, 1]; "
            "m.to_uint8(x) -> (N, 64, 64, 3) uint8. A medigan-1 twin with the same weights: ihc-patch-dcgan-medigan."),
        "status": "active",
        "modality": ["histopathology", "IHC", "brightfield microscopy"],
        "anatomy": ["colon"],
        "generates": ["histology patch", "IHC patch", "RGB image"],
        "use_cases": ["testing", "demonstration", "benchmarking"],
        "tags": ["starter", "DAB", "haematoxylin", "64x64", "scikit-image", "cpu"],
        "architecture": {"family": "gan", "name": "DCGAN"},
        "task": "unconditional",
        "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
        "outputs": [{"name": "image", **RGB_OUT, "shape": [64, 64],
                     "description": "RGB patch, height x width x channel"}],
        "training": {
            "datasets": [{"name": "scikit-image sample data: ihc.png (skimage.data.immunohistochemistry), CMMI",
                          "url": f"{SKIMAGE_DATA}/ihc.png", "license": "NOASSERTION",
                          "size": (f"1 image (512x512 RGB); {m['train_patches_seen']} random 64x64 crops drawn from "
                                   "rows 0..383 during training"),
                          "type": "public"}],
            "date": m["date"], "recipe": "recipes/ihc-patch-dcgan/train.py",
            "augmentations": ["random crop", "horizontal flip", "rot90"],
            "privacy": "A published sample image with no patient identifiers; no patient data.",
        },
        "metrics": patch_metrics(m, "model", "patches"),
        "license": "MIT",
        "authors": AUTHORS,
        "package": {"format": "synthmed-1", "artefact": artefact(mid), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 120, "checks": CHECKS},
        "provenance": {"source": "trained in the synthmed repository by recipes/ihc-patch-dcgan/train.py"},
    }


def retina() -> dict[str, Any]:
    mid = "retina-patch-ddpm"
    m = metrics_file(mid)
    lc = m["label_check_green_darkness"]
    metrics = patch_metrics(m, "model_conditional_half_vessel_half_background",
                            "patches (half label=vessel, half label=background, 25 DDIM steps)")
    uncond = patch_metrics(m, "model_unconditional", "patches (label=any, 25 DDIM steps)")[0]
    uncond["name"] = "patch-stats Fréchet distance (label any)"
    metrics.append(uncond)
    metrics.append({
        "name": "vessel-label contrast (green darkness, vessel minus background)",
        "value": round(lc["generated_vessel"] - lc["generated_background"], 3), "better": "higher",
        "n_samples": int(m["n_generated"]), "extractor": "green channel statistics", "normalised": False,
        "reference": {"name": "held-out real vessel minus background patches",
                      "value": round(lc["heldout_vessel"] - lc["heldout_background"], 3)},
        "source": "measured",
        "method": ("Per patch: mean green value minus the 10th percentile of green in the central 12x12 pixels (a dark "
                   "vessel through the centre raises it). Mean over patches generated with label=vessel minus the "
                   f"mean over label=background ({lc['generated_vessel']} vs {lc['generated_background']}); the "
                   f"reference is the same for held-out real patches ({lc['heldout_vessel']} vs "
                   f"{lc['heldout_background']}). Shows whether the class label steers the sampler.")})
    return {
        "format": "synthmed-record/1", "id": mid, "version": version_of(mid),
        "title": "Class-conditional DDPM for 32x32 colour fundus patches (vessel / background)",
        "summary": (f"A small DDPM (UNet, {m['params'] / 1e6:.2f}M parameters) with a DDIM sampler making 32x32 RGB "
                    "patches from inside the "
                    "fundus disc of scikit-image's retina.jpg, conditioned on 'vessel' or 'background' (or neither)."),
        "description": (
            f"A starter diffusion model that runs anywhere (a {m['zip_size'] / 1e6:.1f} MB zip inside the index; CPU or "
            f"CUDA). Trained for {m['steps']} steps of {m['batch']} patches ({m['train_seconds'] / 60:.0f} minutes on one "
            "CPU core) from ONE photograph, so it is a demonstration and test model (search, "
            "parameters, determinism, benchmarks), not a model of the retina, and not for clinical or research use.\n\n"
            "Training data: skimage.data.retina() (retina.jpg), a fundus photograph of a normal left eye by Mikael "
            "Häggström (Wikimedia Commons), CC0 1.0 per scikit-image's documentation. Downsampled 2x to 706x706; "
            "32x32 patches wholly inside the fundus disc (eroded by 12 px: no black background). Labels by a "
            "vesselness criterion on the green channel (black top-hat, disk radius 6, > 6 grey levels): 'vessel' "
            "when >= 15% of the central 12x12 pixels are vessel, 'background' when none of the patch is. Rows >= 530 "
            "held out for evaluation. 15% of training labels were replaced by the null class, which serves "
            "label='any' (unconditional) and classifier-free guidance.\n\n"
            "The UNet predicts v (v-prediction) on pixels standardised per channel with the training patches' "
            "mean and std (config.json): in [-1, 1] the fundus has a standard deviation of only about 0.15, which "
            "left an epsilon-prediction model on raw pixels with wrong colours after a few minutes of training.\n\n"
            "Samples: colours and background texture match the held-out patches; 'vessel' patches show darker red "
            "structures but rarely the crisp continuous vessels of the photograph (see the vessel-label metric: "
            "the label steers, less strongly than in real patches). guidance > 1 strengthens them.\n\n"
            "Sampling: DDIM (eta 0) over a cosine schedule of 1000 steps; the starting noise of sample i is "
            "torch.randn(3, 32, 32) from torch.Generator().manual_seed(seeds[i]); every network call is padded to a "
            "multiple of 8 rows so results do not depend on the batch. Bare API for benchmarks: m.latents(seeds); "
            "m.forward_batch(x_t, t, y) (one UNet call); m.ddim(x_T, steps, label, guidance) -> float in [-1, 1]; "
            "m.to_uint8(x)."),
        "status": "active",
        "modality": ["fundus photography", "colour fundus photograph"],
        "anatomy": ["retina", "eye"],
        "generates": ["fundus patch", "retinal vessel patch", "RGB image"],
        "use_cases": ["testing", "demonstration", "benchmarking"],
        "tags": ["starter", "diffusion", "DDIM", "32x32", "scikit-image", "cpu", "classifier-free guidance"],
        "architecture": {"family": "diffusion", "name": "DDPM (UNet) with DDIM sampler"},
        "task": "class-conditional",
        "inputs": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 5, "maximum": 250, "default": 25,
                          "description": "DDIM sampling steps"},
                "label": {"enum": ["any", "vessel", "background"], "default": "any",
                          "description": "patch class; 'any' samples unconditionally"},
                "guidance": {"type": "number", "minimum": 0, "maximum": 10, "default": 1.0,
                             "description": "classifier-free guidance scale (1 = plain conditional)"},
            },
            "additionalProperties": False,
        },
        "outputs": [{"name": "image", **RGB_OUT, "shape": [32, 32],
                     "description": "RGB patch, height x width x channel"}],
        "training": {
            "datasets": [{"name": "scikit-image sample data: retina.jpg (skimage.data.retina), M. Häggström",
                          "url": f"{SKIMAGE_DATA}/retina.jpg", "license": "CC0-1.0",
                          "size": (f"1 image (1411x1411 RGB); {m['patch_positions']['train']['vessel']} vessel and "
                                   f"{m['patch_positions']['train']['background']} background 32x32 patch positions; "
                                   f"{m['train_patches_seen']} patches drawn during training"),
                          "type": "public"}],
            "date": m["date"], "recipe": "recipes/retina-patch-ddpm/train.py",
            "augmentations": ["random crop", "horizontal flip", "vertical flip"],
            "privacy": "A CC0 photograph published on Wikimedia Commons; no patient identifiers.",
        },
        "metrics": metrics,
        "license": "MIT",
        "authors": AUTHORS,
        "package": {"format": "synthmed-1", "artefact": artefact(mid), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {"steps": 10, "label": "vessel"}, "timeout_s": 300,
                 "checks": CHECKS},
        "provenance": {"source": "trained in the synthmed repository by recipes/retina-patch-ddpm/train.py"},
    }


def phantom() -> dict[str, Any]:
    mid = "phantom-lesion"
    m = metrics_file(mid)
    metrics = []
    for key, c in m["checks"].items():
        dims = key[0]
        metrics.append({
            "name": f"lesion contrast error {dims}D at {c['requested_contrast_hu']:+g} HU (HU)",
            "value": round(abs(c["measured_contrast_hu_mean"] - c["requested_contrast_hu"]), 2), "better": "lower",
            "n_samples": c["n_samples"], "extractor": "HU statistics inside and around each mask component",
            "normalised": False, "reference": {"name": "requested contrast_hu", "value": c["requested_contrast_hu"]},
            "source": "measured",
            "method": ("|measured - requested| lesion contrast, where " + m["method"] + f". Measured mean "
                       f"{c['measured_contrast_hu_mean']} HU, SD over lesions {c['measured_contrast_hu_sd']} HU; "
                       f"{c['lesions_per_sample_mean']} lesions per sample on average (3 asked); masks binary: "
                       f"{c['masks_binary']}. Below the requested value because of the partial-volume blur, most in "
                       "3D where lesions are only 2-7 voxels across.")})
    return {
        "format": "synthmed-record/1", "id": mid, "version": version_of(mid),
        "title": "Procedural CT-like head phantoms with elliptical lesions and masks (2D and 3D)",
        "summary": ("Shepp-Logan-like head phantoms in Hounsfield units with random elliptical lesions and their "
                    "binary masks: a 128x128 slice and a 64x64x64 volume per sample. Procedural, nothing learned."),
        "description": (
            "A starter model that needs no weights: numpy draws a modified Shepp-Logan head (Toft's ellipses, "
            "ellipsoids after Kak & Slaney) in CT numbers (air -1000, bone 800, brain about 30, CSF about 5, "
            "grey structures about 40 HU), jittered per seed in size, in-plane rotation and tissue values, places "
            "non-overlapping elliptical lesions wholly inside the brain with the requested size and contrast, "
            "applies a light partial-volume blur and Gaussian noise, and returns the binary lesion masks. Useful "
            "for testing segmentation pipelines, writers (NIfTI, DICOM, PNG) and synthmed itself; not a model of "
            "real CT anatomy.\n\n"
            "Every sample returns all four outputs (synthmed's runner expects every declared output): the 2D "
            "image and mask (1.5 mm pixels) and the 3D volume and mask (D, H, W; 3 mm voxels). 'dims' chooses what "
            "is rendered: 0 both (default), 2 or 3 only one; the other outputs then come back as air (-1000 HU) "
            "with empty masks. Sample i depends only on seeds[i] and the params (numpy.random.default_rng([seed, 2]) "
            "for 2D and [seed, 3] for 3D). Bare API: m.render(seed, **params) renders one sample."),
        "status": "active",
        "modality": ["CT"],
        "anatomy": ["head", "brain"],
        "generates": ["CT slice", "CT volume", "lesion mask", "phantom"],
        "use_cases": ["testing", "segmentation", "demonstration", "benchmarking"],
        "tags": ["starter", "procedural", "Shepp-Logan", "phantom", "Hounsfield units", "3D", "numpy"],
        "architecture": {"family": "procedural", "name": "Shepp-Logan phantom with elliptical lesions"},
        "task": "other",
        "inputs": {
            "type": "object",
            "properties": {
                "dims": {"enum": [0, 2, 3], "default": 0,
                         "description": "render both (0), only the 2D slice (2) or only the 3D volume (3)"},
                "lesion_count": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                "lesion_size_mm": {"type": "array", "items": {"type": "number", "minimum": 2, "maximum": 60},
                                   "minItems": 2, "maxItems": 2, "default": [6, 20],
                                   "description": "[min, max] lesion diameter in mm (min <= max)"},
                "contrast_hu": {"type": "number", "minimum": -300, "maximum": 300, "default": 40,
                                "description": "HU added inside lesions (negative: hypodense)"},
                "noise_hu": {"type": "number", "minimum": 0, "maximum": 100, "default": 10,
                             "description": "standard deviation of the Gaussian noise, HU"},
            },
            "additionalProperties": False,
        },
        "outputs": [
            {"name": "image", "kind": "image", "dims": 2, "shape": [128, 128], "dtype": "int16", "channels": 1,
             "value_range": [-1024, 3071], "spacing_mm": [1.5, 1.5], "description": "axial slice, HU"},
            {"name": "mask", "kind": "mask", "dims": 2, "shape": [128, 128], "dtype": "uint8", "channels": 1,
             "value_range": [0, 1], "spacing_mm": [1.5, 1.5], "description": "lesion mask of image"},
            {"name": "volume", "kind": "volume", "dims": 3, "shape": [64, 64, 64], "dtype": "int16", "channels": 1,
             "value_range": [-1024, 3071], "spacing_mm": [3.0, 3.0, 3.0], "description": "volume, HU, D x H x W"},
            {"name": "volume_mask", "kind": "mask", "dims": 3, "shape": [64, 64, 64], "dtype": "uint8", "channels": 1,
             "value_range": [0, 1], "spacing_mm": [3.0, 3.0, 3.0], "description": "lesion mask of volume"},
        ],
        "training": {
            "datasets": [{"name": "none: procedural; ellipse parameters from Shepp & Logan (1974) as modified by Toft",
                          "url": "https://doi.org/10.1109/TNS.1974.6499235", "type": "mathematical definition"}],
            "date": m["date"], "recipe": "recipes/phantom-lesion/train.py",
            "privacy": "No data of any person: every image is computed.",
        },
        "metrics": metrics,
        "license": "MIT",
        "authors": AUTHORS,
        "publications": [{"doi": "10.1109/TNS.1974.6499235", "title": "The Fourier reconstruction of a head section",
                          "year": 1974}],
        "package": {"format": "synthmed-1", "artefact": artefact(mid), "entry_point": "model:build",
                    "requirements": ["numpy>=1.24"], "python": ">=3.10", "devices": ["cpu"]},
        "test": {"num_samples": 4, "seed": 0, "params": {"lesion_count": 2}, "timeout_s": 120, "checks": CHECKS},
        "provenance": {"source": "written in the synthmed repository; built by recipes/phantom-lesion/train.py"},
    }


def medigan_twin() -> dict[str, Any]:
    mid = "ihc-patch-dcgan-medigan"
    rec = ihc()
    m = metrics_file(mid)
    rec.update({
        "id": mid,
        "title": "DCGAN for 64x64 IHC patches of colonic glands (medigan package layout)",
        "summary": ("The weights of ihc-patch-dcgan 1.0.0 behind medigan's generate(model_file, num_samples, "
                    "output_path, save_images) convention: a medigan-1 package for comparisons and benchmarks."),
        "description": (
            "The same network and weights as ihc-patch-dcgan 1.0.0, packaged the way medigan packages its models: "
            "a zip with __init__.py (generate(model_file, num_samples, output_path, save_images, seed=None, "
            "device=None)) and model.pt (a torch.save state_dict, loaded with torch.load(weights_only=True)). Like "
            "medigan's models it draws its latents from torch's global generator (seeded by 'seed' when given), "
            "returns a list of (64, 64, 3) uint8 arrays when save_images is False and writes {i}.png files when it "
            "is True. synthmed runs it one seed per call with the global generators seeded, which reproduces "
            f"ihc-patch-dcgan pixel for pixel (checked by the build: {m['identical_to_synthmed_package_seed_for_seed']} "
            f"over {m['seeds_compared']} seeds). Exists to compare the two package formats and to benchmark "
            "synthmed against medigan-style generation on the same model.\n\n" + rec["description"].split("\n\n", 1)[1]),
        "tags": rec["tags"] + ["medigan"],
        "package": {"format": "medigan-1", "artefact": artefact(mid), "entry_point": "__init__:generate",
                    "weights": "model.pt", "generate_args": {},
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "provenance": {"source": ("built by recipes/ihc-patch-dcgan-medigan/build.py from "
                                  f"index/artefacts/ihc-patch-dcgan/1.0.0.zip (sha256 {m['source_sha256']})")},
    })
    rec["test"] = {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 120, "checks": CHECKS}
    return rec


RETINA_DATA = {
    "name": "scikit-image sample data: retina.jpg (skimage.data.retina), M. Häggström",
    "url": f"{SKIMAGE_DATA}/retina.jpg", "license": "CC0-1.0", "type": "public",
    "size": "1 image (1411x1411 RGB); the 32x32 vessel and background patch positions of retina-patch-ddpm's recipe"}
RETINA_COMMON = {
    "status": "active",
    "modality": ["fundus photography", "colour fundus photograph"],
    "anatomy": ["retina", "eye"],
    "generates": ["fundus patch", "retinal vessel patch", "RGB image"],
    "use_cases": ["testing", "demonstration", "benchmarking"],
    "license": "MIT", "authors": AUTHORS,
}


def ldm() -> dict[str, Any]:
    mid = "retina-patch-ldm"
    m = metrics_file(mid)
    ae, cpu = m["autoencoder"], m["train_cpu_seconds"]
    ae_method = (f"Reconstruction of {ae['n']} {ae['data']} through the VAE (encode to the posterior mean, decode), "
                 f"images as uint8 RGB compared in 0..255 with data_range 255; MS-SSIM with a {ae['ms_ssim_win_size']}-tap "
                 f"Gaussian window (sigma {ae['ms_ssim_sigma']}) over {ae['ms_ssim_scales']} scales (32x32 images fit "
                 "no more), Wang et al.'s first weights renormalised; computed with synthmed.registry.metrics "
                 f"(recipes/{mid}/metrics.json).")  # the module's name when 1.0.0 was published (now
    # synthmed.registry.measuring.metrics): a published record is immutable, so its text stays
    return {
        "format": "synthmed-record/1", "id": mid, "version": version_of(mid),
        "title": "Medfusion-style latent diffusion for 32x32 colour fundus patches (vessel / background)",
        "summary": ("A small VAE (32x32x3 <-> 8x8x4, downsampling 4) and a class-conditional latent DDPM with "
                    "classifier-free guidance and a DDIM sampler, trained on the patches of retina-patch-ddpm."),
        "description": (
            "A starter latent diffusion model in the style of Medfusion (Müller-Franzes et al., 2023), small enough "
            f"to train on one CPU core: a VAE ({m['params_vae'] / 1e6:.2f}M parameters; L1 + MSE reconstruction "
            f"and a KL weight of {m['kl_weight']}; Medfusion's perceptual and adversarial losses are left out) trained "
            f"for {m['vae_steps']} steps, then a latent UNet ({m['params_unet'] / 1e6:.2f}M parameters, v-prediction, "
            f"cosine schedule of 1000 steps, 15% null labels for classifier-free guidance) for {m['ldm_steps']} steps "
            f"of {m['batch']} patches: {cpu['total']:.0f} CPU seconds in all ({cpu['vae']:.0f} + {cpu['ldm']:.0f}), "
            "about the training compute of retina-patch-ddpm, so the two can be compared at equal compute "
            "(docs/models.md has the comparison, made with synthmed evaluate). Trained from ONE photograph: a "
            "demonstration and test model, not a model of the retina, not for clinical or research use.\n\n"
            "Data, labels and the held-out rows are those of retina-patch-ddpm (its recipe is imported). "
            "Sampling: DDIM (eta 0) in latent space from torch.randn(4, 8, 8) of "
            "torch.Generator().manual_seed(seeds[i]), then the VAE decoder; every network call is padded to a "
            "multiple of 8 rows. Bare API: m.latents(seeds), m.ddim(z, steps, label, guidance), m.decode(z), "
            "m.encode(x), m.reconstruct(x)."),
        **RETINA_COMMON,
        "tags": ["starter", "diffusion", "latent diffusion", "LDM", "VAE", "DDIM", "32x32", "scikit-image", "cpu",
                 "classifier-free guidance", "Medfusion"],
        "architecture": {"family": "diffusion", "name": "latent diffusion (VAE + latent UNet) with DDIM sampler"},
        "task": "class-conditional",
        "inputs": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 5, "maximum": 250, "default": 25,
                          "description": "DDIM sampling steps"},
                "label": {"enum": ["any", "vessel", "background"], "default": "any",
                          "description": "patch class; 'any' samples unconditionally"},
                "guidance": {"type": "number", "minimum": 0, "maximum": 10, "default": 1.0,
                             "description": "classifier-free guidance scale (1 = plain conditional)"},
            },
            "additionalProperties": False,
        },
        "outputs": [{"name": "image", **RGB_OUT, "shape": [32, 32], "description": "RGB patch, height x width x channel"}],
        "training": {
            "datasets": [RETINA_DATA], "date": m["date"], "recipe": f"recipes/{mid}/train.py",
            "augmentations": ["random crop", "horizontal flip", "vertical flip"],
            "privacy": "A CC0 photograph published on Wikimedia Commons; no patient identifiers.",
        },
        "metrics": [
            {"name": "autoencoder PSNR", "value": round(ae["psnr"], 3), "better": "higher", "n_samples": ae["n"],
             "extractor": "none (pixels)", "normalised": False, "source": "measured", "method": ae_method},
            {"name": "autoencoder MS-SSIM", "value": round(ae["ms_ssim"], 4), "better": "higher", "n_samples": ae["n"],
             "extractor": "none (pixels)", "normalised": False, "source": "measured", "method": ae_method},
        ],
        "package": {"format": "synthmed-1", "artefact": artefact(mid), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {"steps": 10, "label": "vessel"}, "timeout_s": 300,
                 "checks": CHECKS},
        "provenance": {"source": f"trained in the synthmed repository by recipes/{mid}/train.py"},
    }


def dcgan_retina() -> dict[str, Any]:
    mid = "retina-patch-dcgan"
    m = metrics_file(mid)
    return {
        "format": "synthmed-record/1", "id": mid, "version": version_of(mid),
        "title": "Unconditional DCGAN for 32x32 colour fundus patches (a GAN baseline)",
        "summary": ("A small resize-convolution DCGAN (hinge loss, spectral-norm discriminator) trained on the "
                    "patches of retina-patch-ddpm at about its training compute."),
        "description": (
            f"A GAN baseline for comparing GAN, DDPM and latent diffusion at equal training compute: generator "
            f"{m['params_generator'] / 1e6:.2f}M parameters, trained {m['steps']} steps of {m['batch']} patches "
            f"({m['train_cpu_seconds']:.0f} CPU seconds on one thread). Unconditional: vessel and background "
            "patches alike. Batch norms run in eval mode with population statistics re-estimated on 4096 latents "
            "after training; EMA of the generator's weights. Trained from ONE photograph: a demonstration and "
            "test model, not for clinical or research use. Data and held-out rows are those of retina-patch-ddpm. "
            "Sample i comes from torch.randn(100) of torch.Generator().manual_seed(seeds[i]); calls are padded to a "
            "multiple of 8 rows."),
        **RETINA_COMMON,
        "tags": ["starter", "GAN", "DCGAN", "32x32", "scikit-image", "cpu", "baseline"],
        "architecture": {"family": "gan", "name": "DCGAN (resize-conv generator, hinge loss)"},
        "task": "unconditional",
        "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
        "outputs": [{"name": "image", **RGB_OUT, "shape": [32, 32], "description": "RGB patch, height x width x channel"}],
        "training": {
            "datasets": [RETINA_DATA], "date": m["date"], "recipe": f"recipes/{mid}/train.py",
            "augmentations": ["random crop", "horizontal flip", "vertical flip"],
            "privacy": "A CC0 photograph published on Wikimedia Commons; no patient identifiers.",
        },
        "metrics": [],
        "package": {"format": "synthmed-1", "artefact": artefact(mid), "entry_point": "model:build",
                    "requirements": ["torch>=2.1", "numpy>=1.24"], "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 8, "seed": 0, "params": {}, "timeout_s": 300, "checks": CHECKS},
        "provenance": {"source": f"trained in the synthmed repository by recipes/{mid}/train.py"},
    }


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "ihc-patch-dcgan": ihc, "retina-patch-ddpm": retina, "phantom-lesion": phantom,
    "ihc-patch-dcgan-medigan": medigan_twin, "retina-patch-ldm": ldm, "retina-patch-dcgan": dcgan_retina,
}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dualgan_records import BUILDERS as _DUALGAN  # noqa: E402 - the dual-GAN miniature's three records

BUILDERS.update(_DUALGAN)


def write(model_id: str) -> Path:
    rec = BUILDERS[model_id]()
    path = REPO / "index" / "models" / model_id / f"{version_of(model_id)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    for mid in sys.argv[1:] or list(BUILDERS):
        print(write(mid))
