"""Train the dual-GAN miniature (Guibas et al. 2017, in miniature) from scikit-image's
retina.jpg and build its synthmed-1 packages, then evaluate it as the paper did.

    python recipes/retina-vessel-dualgan/train.py --out DIR [--stage all|tree|mask|photo|eval]

Seeded, CPU only (run it with nice -n 10; one torch thread). Writes into DIR:
tree/package + tree/<tree-version>.zip (stage I, retina-vessel-mask-tree), photo/package +
photo/<version>.zip (stage II, retina-vessel-pix2pix), metrics.json, pairs-grid.png
(generated mask/image pairs beside real ones), the mask filter's agreement with each training
set's masks. The defaults make the newest versions (tree 1.1.0 with --stage tree, pix2pix
1.2.0 with --stage photo, evaluated with 5 segmenter seeds); the older ones were made with
  pix2pix 1.1.0: --stage photo --version 1.1.0 --consistency-weight 0, with train.py as of
                 commit abe46e5 (metrics-1.2.0.json; that filter's gradient at tied pixels
                 differs from today's, see _grey_morph)
  tree 1.0.0:    --stage tree with 80 candidates of 120 masks (metrics-1.1.0.json; how they were split
                 between --tree-random and --tree-local was not recorded)
  pix2pix 1.0.0: --stage photo --photo-decoder transpose --photo-z-dim 0 --l1-weight 100
                 --tophat-weight 0 --photo-steps 2000
  DCGAN 1.0.0:   --stage mask --geometry dcgan
and their numbers are in metrics-1.0.0.json / metrics-1.1.0.json / metrics-1.2.0.json. `--baseline DIR` (a folder
with tree/package and photo/package of the previous version) evaluates that version's
stages in the same run.

Data: skimage.data.retina() (retina.jpg, 1411x1411 RGB colour fundus photograph of a
normal left eye, Mikael Häggström, Wikimedia Commons, CC0 1.0), downsampled 2x (box
filter) to 706x706. Vessel masks by a vesselness filter (the same as
recipes/retina-patch-ddpm): black top-hat (disk radius 6) of the Gaussian-smoothed green
channel > 6 grey levels inside the fundus disc (eroded by 12 px), specks under 30 px
removed. 64x64 patches wholly inside the disc; training patches lie wholly above row 530,
held-out patches wholly below it (rows 530..705).

Stage I: the vessel-tree model (tree-package/model.py) fitted to 2000 real training masks
by tree_fit.py (a seeded random then local search minimising a distance between 12 mask
statistics); --stage mask trains 1.0.0's DCGAN instead. Stage II: a four-level U-Net
generator with a 16x16 PatchGAN discriminator on (mask, image) pairs. 1.1.0 is a cVAE-GAN
(BicycleGAN's cVAE-GAN half): an appearance encoder gives the code of each real patch, the
generator's decoder upsamples by nearest neighbour and a 3x3 convolution, and the loss is
least squares adversarial (on the encoded and on a random code's image) + l1_weight * L1 +
kl_weight * KL + tophat_weight * L1 between the mask filter's response (black top-hat of the
smoothed green channel, written in torch) on the generated and on the real patch. 1.2.0
adds consistency_weight * a hinge on that filter's response of every generated image (the
encoded and the random code's): above the mask threshold + 1 on the mask, below it - 1 off
it (--consistency-sides both; "background" hinges only off the mask). 1.0.0 was
plain pix2pix (loss = adversarial + 100 * L1); --l1-weight 1 gives the 1:1 weighting of the
dual-GAN paper.

Evaluation (--stage eval): the same small segmentation network (a two-level U-Net) is
trained with the same steps, batch and seed on (a) synthetic pairs, masks from stage I
and images from stage II at the pipeline's stage seeds of samples 0..999, (b) real pairs
from the training region, (c) real training masks with stage II's images, and its pixel F1
(threshold 0.5, pooled over all pixels) measured on held-out real patches (vesselness masks
as ground truth), over 5 training seeds (1.0.0 and 1.1.0 were published with 3 seeds and
synthetic seeds 0..999).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "_common"))
import buildlib  # noqa: E402


def _load(name: str, folder: str):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE / folder / "model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mask_pkg = _load("dualgan_mask_model", "mask-package")
photo_pkg = _load("dualgan_photo_model", "photo-package")
sys.path.insert(0, str(HERE))
import tree_fit  # noqa: E402  (loads tree-package/model.py)

SIZE = 64
HALF = 706
SPLIT_ROW = 530


def prepare() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (image 706x706x3 uint8, disc mask, vessel mask)."""
    import warnings

    from PIL import Image
    from skimage import data, filters, morphology

    im = np.asarray(Image.fromarray(data.retina()).resize((HALF, HALF), Image.BOX))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        disc = morphology.binary_erosion(im.max(-1) > 30, morphology.disk(12))
        g = filters.gaussian(im[..., 1].astype(np.float64), 1, preserve_range=True)
        bt = morphology.black_tophat(g, morphology.disk(6))
        ves = morphology.remove_small_objects((bt > 6) & disc, 30)
    return im, disc, ves.astype(np.uint8)


def corners(disc: np.ndarray, rows: tuple[int, int], stride: int = 1) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view as sw

    inside = sw(disc, (SIZE, SIZE)).all(axis=(2, 3))
    ok = np.zeros_like(inside)
    ok[rows[0]: rows[1] - SIZE + 1] = True
    ok &= inside
    c = np.argwhere(ok)
    return c[(c[:, 0] % stride == 0) & (c[:, 1] % stride == 0)]


def crop_pairs(im: np.ndarray, ves: np.ndarray, cs: np.ndarray, rng: np.random.Generator | None
               ) -> tuple[np.ndarray, np.ndarray]:
    imgs = np.stack([im[y:y + SIZE, x:x + SIZE] for y, x in cs])
    masks = np.stack([ves[y:y + SIZE, x:x + SIZE] for y, x in cs])
    if rng is not None:  # flips only: rot90 would turn the fundus's illumination gradient
        for axis in (1, 2):
            f = rng.integers(0, 2, len(cs)).astype(bool)
            imgs[f] = np.flip(imgs[f], axis)
            masks[f] = np.flip(masks[f], axis)
    return np.ascontiguousarray(imgs), np.ascontiguousarray(masks)


def img_t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def mask_t(m: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(m.astype(np.float32))[:, None]


def save_weights(net: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().float().contiguous() for k, v in net.state_dict().items()}, str(path))


# ---------------------------------------------------------------- stage I: DCGAN masks


class MaskDSN(nn.Module):
    """The mask discriminator with spectral normalisation and no BatchNorm (for hinge loss)."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, c, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(c, c * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(c * 2, c * 4, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(c * 4, c * 8, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(c * 8, 1, 4, 1, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class MaskD(nn.Module):
    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 2, c * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 4, c * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 8), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 8, 1, 4, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def train_mask(args: argparse.Namespace, im: np.ndarray, ves: np.ndarray, train_c: np.ndarray) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    hinge = args.mask_loss == "hinge-sn"
    G, D = mask_pkg.Generator(args.ch), (MaskDSN(args.ch) if hinge else MaskD(args.ch))
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    t0 = time.time()
    for step in range(1, args.mask_steps + 1):
        _, m = crop_pairs(im, ves, train_c[rng.integers(0, len(train_c), args.batch)], rng)
        real = mask_t(m) * 2 - 1
        z = torch.randn(args.batch, mask_pkg.NZ)
        fake = G(z) * 2 - 1
        sigma = args.instance_noise * max(0.0, 1.0 - step / (0.75 * args.mask_steps))  # decays to 0
        noisy_real, noisy_fake = real, fake
        if args.instance_noise > 0:  # (without it no random numbers are drawn: the default run is unchanged)
            noisy_real = real + sigma * torch.randn_like(real)
            noisy_fake = fake + sigma * torch.randn_like(fake)
        if hinge:
            ld = F.relu(1 - D(noisy_real)).mean() + F.relu(1 + D(noisy_fake.detach())).mean()
        else:
            ld = bce(D(noisy_real), torch.full((args.batch,), 0.9)) + bce(D(noisy_fake.detach()),
                                                                          torch.zeros(args.batch))
        od.zero_grad(set_to_none=True)
        ld.backward()
        od.step()
        lg = -D(noisy_fake).mean() if hinge else bce(D(noisy_fake), torch.ones(args.batch))
        og.zero_grad(set_to_none=True)
        lg.backward()
        og.step()
        if step % 200 == 0 or step == 1:
            print(f"[mask] step {step} D {ld.item():.3f} G {lg.item():.3f} {time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0
    # BatchNorm statistics for eval mode: a cumulative average over 64 batches of 64
    with torch.no_grad():
        for mod in G.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        G.train()
        for _ in range(64):
            G(torch.randn(64, mask_pkg.NZ))
    G.eval()
    pkg = args.out / "mask" / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "mask-package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {"ch": args.ch, "nz": mask_pkg.NZ, "size": SIZE})
    save_weights(G, pkg / "weights.safetensors")
    zip_path = args.out / "mask" / f"{args.version}.zip"
    buildlib.deterministic_zip(pkg, zip_path)
    return {"steps": args.mask_steps, "batch": args.batch, "train_seconds": round(train_s, 1),
            "loss": args.mask_loss, "instance_noise": args.instance_noise,
            "params_generator": sum(p.numel() for p in G.parameters()),
            "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size}


def fit_tree(args: argparse.Namespace, im: np.ndarray, ves: np.ndarray, train_c: np.ndarray) -> dict:
    """Stage I, version 2: the vessel-tree model fitted to 2000 random training masks."""
    rng = np.random.default_rng(args.seed + 3)
    _, real_m = crop_pairs(im, ves, train_c[rng.integers(0, len(train_c), 2000)], None)
    cpu0 = time.process_time()
    fitted = tree_fit.fit(real_m, args.seed + 4, n_random=args.tree_random, n_local=args.tree_local,
                          n_eval=args.tree_samples, log=lambda msg: print(msg, flush=True), space=args.tree_space)
    pkg = args.out / "tree" / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "tree-package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {"size": SIZE, "params": fitted["params"]})
    zip_path = args.out / "tree" / f"{args.tree_version}.zip"
    buildlib.deterministic_zip(pkg, zip_path)
    return {**fitted, "cpu_seconds": round(time.process_time() - cpu0, 1), "n_real_masks": 2000,
            "zip_sha256": buildlib.sha256_file(zip_path),
            "zip_size": zip_path.stat().st_size}


# ---------------------------------------------------------------- stage II: pix2pix


class PatchD(nn.Module):
    """(mask, image) 4x64x64 -> 8x8 patch logits (receptive field 34 px)."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c * 2, 4, 2, 1), nn.InstanceNorm2d(c * 2, affine=True), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 2, c * 4, 4, 2, 1), nn.InstanceNorm2d(c * 4, affine=True), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 4, 1, 3, 1, 1))

    def forward(self, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([m, x], 1))


_GAUSS = torch.exp(-0.5 * torch.arange(-4, 5, dtype=torch.float32) ** 2)
_GAUSS = _GAUSS / _GAUSS.sum()
#: disk(6) as rows: for each row offset dy, the half-width of the disk on that row
_DISK_ROWS = [(dy, int(np.floor(np.sqrt(36 - dy * dy)))) for dy in range(-6, 7)]


def _grey_morph(g: torch.Tensor, op: str) -> torch.Tensor:
    """Grey dilation ('max') or erosion ('min') of (B, 1, H, W) by disk(6), edges replicated:
    the maximum over the disk's rows of a 1-D max-pool as wide as that row (the same values
    as a maximum over the disk's 113 offsets, about 4x faster with its gradient). pix2pix
    1.1.0 was trained with that offset form (train.py at commit abe46e5), which splits the
    gradient between tied pixels differently, so its exact weights need that commit."""
    sign = 1.0 if op == "max" else -1.0
    h, w = g.shape[2:]
    p = F.pad(g * sign, (6, 6, 6, 6), mode="replicate")
    out: torch.Tensor | None = None
    for dy, half in _DISK_ROWS:
        row = F.max_pool2d(p[:, :, 6 + dy: 6 + dy + h], (1, 2 * half + 1), stride=1)[:, :, :, 6 - half: 6 - half + w]
        out = row if out is None else torch.maximum(out, row)
    assert out is not None
    return out * sign


def vesselness(img: torch.Tensor) -> torch.Tensor:
    """The mask filter of prepare(), differentiable, on (B, 3, H, W) images in [-1, 1]: the
    black top-hat (disk radius 6) of the Gaussian-smoothed (sigma 1) green channel, in grey
    levels; a pixel is vessel where it exceeds VESSEL_LEVEL."""
    g = (img[:, 1:2] + 1.0) * 127.5
    k = _GAUSS.to(img)
    g = F.conv2d(F.pad(g, (4, 4, 0, 0), mode="replicate"), k.view(1, 1, 1, 9))
    g = F.conv2d(F.pad(g, (0, 0, 4, 4), mode="replicate"), k.view(1, 1, 9, 1))
    return _grey_morph(_grey_morph(g, "max"), "min") - g


VESSEL_LEVEL = 6.0


def consistency_loss(img: torch.Tensor, mask01: torch.Tensor, margin: float = 1.0,
                     sides: str = "both") -> torch.Tensor:
    """Hinge on the filter's response: above VESSEL_LEVEL + margin where the mask says vessel
    (sides "both" only), below VESSEL_LEVEL - margin elsewhere (mean over pixels, grey levels)."""
    bt = vesselness(img)
    off = F.relu(bt - (VESSEL_LEVEL - margin)) * (1.0 - mask01)
    if sides == "background":
        return off.mean()
    on = F.relu(VESSEL_LEVEL + margin - bt) * mask01
    return (on + off).mean()


class AppearanceE(nn.Module):
    """Encoder of the cVAE-GAN (training only): RGB 64x64 -> (mu, logvar) of the latent code,
    four strided convolutions and a global average: the patch's global appearance."""

    def __init__(self, z_dim: int, c: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c * 2, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 2, c * 4, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c * 4, c * 4, 4, 2, 1), nn.LeakyReLU(0.2, True))
        self.head = nn.Linear(c * 4, 2 * z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.net(x).mean((2, 3))).chunk(2, 1)
        return mu, logvar


def _lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, target))


def train_photo(args: argparse.Namespace, im: np.ndarray, ves: np.ndarray, train_c: np.ndarray) -> dict:
    torch.manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)
    cpu0 = time.process_time()
    zd = args.photo_z_dim
    G, D = photo_pkg.UNet(args.ch, zd, args.photo_decoder), PatchD(args.ch)
    E = AppearanceE(zd) if zd else None
    og = torch.optim.Adam([*G.parameters(), *(E.parameters() if E else [])], 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    t0 = time.time()
    kl = torch.zeros(())
    for step in range(1, args.photo_steps + 1):
        x, m = crop_pairs(im, ves, train_c[rng.integers(0, len(train_c), args.photo_batch)], rng)
        real, mt = img_t(x), mask_t(m) * 2 - 1
        if E is None:
            fake, fakes = G(mt), []
        else:  # cVAE-GAN: the encoded code reconstructs the patch; a random code must look real too
            mu, logvar = E(real)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            fake = G(mt, z)
            fakes = [G(mt, torch.randn_like(mu))]
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        ld = 0.5 * (_lsgan(D(mt, real), 1.0) + _lsgan(D(mt, fake.detach()), 0.0))
        for f in fakes:
            ld = ld + 0.5 * _lsgan(D(mt, f.detach()), 0.0)
        od.zero_grad(set_to_none=True)
        ld.backward()
        od.step()
        adv = _lsgan(D(mt, fake), 1.0) + sum((_lsgan(D(mt, f), 1.0) for f in fakes), torch.zeros(()))
        l1 = F.l1_loss(fake, real)
        lg = adv + args.l1_weight * l1 + args.kl_weight * kl
        if args.tophat_weight > 0:  # the mask filter's own response, matched to the real patch's
            lg = lg + args.tophat_weight * F.l1_loss(vesselness(fake), vesselness(real))
        cons = torch.zeros(())
        if args.consistency_weight > 0:  # (off: 1.0.0's objective, unchanged)
            cons = consistency_loss(fake, (mt + 1) / 2, sides=args.consistency_sides)
            for f in fakes:  # a random code's image must follow its mask too
                cons = cons + consistency_loss(f, (mt + 1) / 2, sides=args.consistency_sides)
            lg = lg + args.consistency_weight * cons
        og.zero_grad(set_to_none=True)
        lg.backward()
        og.step()
        if step % 200 == 0 or step == 1:
            print(f"[photo] step {step} D {ld.item():.3f} adv {adv.item():.3f} L1 {l1.item():.3f} KL {kl.item():.2f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0
    G.eval()
    pkg = args.out / "photo" / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "photo-package" / "model.py", pkg / "model.py")
    cfg = {"ch": args.ch, "size": SIZE, "l1_weight": args.l1_weight}
    if zd or args.photo_decoder != "transpose":  # 1.0.0's config has neither key
        cfg.update({"z_dim": zd, "decoder": args.photo_decoder, "kl_weight": args.kl_weight})
    buildlib.write_json(pkg / "config.json", cfg)
    save_weights(G, pkg / "weights.safetensors")
    zip_path = args.out / "photo" / f"{args.version}.zip"
    buildlib.deterministic_zip(pkg, zip_path)
    return {"steps": args.photo_steps, "batch": args.photo_batch, "l1_weight": args.l1_weight,
            "z_dim": zd, "decoder": args.photo_decoder, "tophat_weight": args.tophat_weight, "kl_weight": args.kl_weight if zd else None,
            "consistency_weight": args.consistency_weight,
            **({"consistency_sides": args.consistency_sides} if args.consistency_weight else {}), "cpu_seconds": round(time.process_time() - cpu0, 1),
            "loss": ("least-squares adversarial + l1_weight * L1" if not zd else
                     "cVAE-GAN: least-squares adversarial on the encoded code's and a random code's image + "
                     "l1_weight * L1 of the encoded code's image + kl_weight * KL(code || N(0, 1))")
                    + (" + tophat_weight * L1 of the mask filter's response" if args.tophat_weight else "")
                    + (f" + consistency_weight * the mask-consistency hinge ({args.consistency_sides}) on every "
                       "generated image" if args.consistency_weight else ""),
            "train_seconds": round(train_s, 1),
            "params_generator": sum(p.numel() for p in G.parameters()),
            "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size}


# ---------------------------------------------------------------- evaluation


class SegNet(nn.Module):
    """A small two-level U-Net: RGB 64x64 -> vessel logits 64x64."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(True),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(True))
        self.e1, self.e2, self.mid = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.u2, self.d2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2), block(4 * c, 2 * c)
        self.u1, self.d1 = nn.ConvTranspose2d(2 * c, c, 2, 2), block(2 * c, c)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(x)
        e2 = self.e2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.d2(torch.cat([self.u2(m), e2], 1))
        d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
        return self.out(d1)


def train_seg(imgs: np.ndarray, masks: np.ndarray, steps: int, batch: int, seed: int) -> SegNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SegNet()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        idx = rng.integers(0, len(imgs), batch)
        x, m = imgs[idx].copy(), masks[idx].copy()
        for axis in (1, 2):
            f = rng.integers(0, 2, batch).astype(bool)
            x[f] = np.flip(x[f], axis)
            m[f] = np.flip(m[f], axis)
        logits = net(img_t(x))
        loss = F.binary_cross_entropy_with_logits(logits, mask_t(m))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def f1(net: SegNet, imgs: np.ndarray, masks: np.ndarray) -> dict:
    pred = np.concatenate([(net(img_t(imgs[i:i + 64])) > 0).numpy()[:, 0] for i in range(0, len(imgs), 64)])
    gt = masks.astype(bool)
    tp, fp, fn = int((pred & gt).sum()), int((pred & ~gt).sum()), int((~pred & gt).sum())
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    return {"f1": round(2 * p * r / max(p + r, 1e-12), 4), "precision": round(p, 4), "recall": round(r, 4)}


@torch.no_grad()
def filter_agreement(imgs: np.ndarray, masks: np.ndarray) -> dict:
    """How well the mask filter (vesselness() > VESSEL_LEVEL, computed on each 64x64 patch)
    finds a pair's mask in its image: precision (the share of over-threshold pixels inside the
    mask) and recall (the share of mask pixels over the threshold), pooled over all pixels."""
    over = np.concatenate([(vesselness(img_t(imgs[i:i + 64])) > VESSEL_LEVEL).numpy()[:, 0]
                           for i in range(0, len(imgs), 64)])
    gt = masks.astype(bool)
    tp = int((over & gt).sum())
    return {"precision": round(tp / max(int(over.sum()), 1), 4), "recall": round(tp / max(int(gt.sum()), 1), 4)}


BASELINE_SYN = "baseline: synthetic pairs of the previous version's stages"
BASELINE_S2 = "baseline: real training masks -> the previous version's stage II"


def evaluate(args: argparse.Namespace, im: np.ndarray, ves: np.ndarray, train_c: np.ndarray,
             held_c: np.ndarray) -> dict:
    mask_model = (tree_fit.tree_pkg.build(args.out / "tree" / "package") if args.geometry == "tree"
                  else mask_pkg.build(args.out / "mask" / "package", "cpu"))
    photo_model = photo_pkg.build(args.out / "photo" / "package", "cpu")
    n = args.n_synthetic
    cpu0 = time.process_time()
    t0 = time.time()
    from synthmed.registry.pipeline import stage_seed  # the seeds the pipeline gives each stage of sample i

    geometry_seeds = [stage_seed(i, "geometry") for i in range(n)]
    syn_m = mask_model.sample(geometry_seeds)["mask"]
    photo_seeds = [stage_seed(i, "photo") for i in range(n)]
    syn_x = photo_model.sample(photo_seeds, mask=syn_m)["image"]
    gen_s = time.time() - t0
    rng = np.random.default_rng(args.seed + 7)
    real_x, real_m = crop_pairs(im, ves, train_c[rng.integers(0, len(train_c), n)], None)
    s2_x = photo_model.sample(photo_seeds, mask=real_m)["image"]
    held_x, held_m = crop_pairs(im, ves, held_c, None)
    sets = {"synthetic pairs (stage I masks -> stage II images)": (syn_x, syn_m),
            "real pairs (training region)": (real_x, real_m),
            "real training masks -> stage II images": (s2_x, real_m)}
    if args.baseline:  # the previous version's two stages, through the same protocol in the same run
        b_mask = tree_fit.tree_pkg.build(args.baseline / "tree" / "package")
        b_photo = photo_pkg.build(args.baseline / "photo" / "package", "cpu")
        b_m = b_mask.sample(geometry_seeds)["mask"]
        sets[BASELINE_SYN] = (b_photo.sample(photo_seeds, mask=b_m)["image"], b_m)
        sets[BASELINE_S2] = (b_photo.sample(photo_seeds, mask=real_m)["image"], real_m)
    agreement = {name: filter_agreement(x, m) for name, (x, m) in sets.items()}
    print("[eval] mask filter agreement", agreement, flush=True)
    table: dict = {}
    for name, (x, m) in sets.items():
        runs = []
        for k in range(args.seg_seeds):
            t1 = time.time()
            net = train_seg(x, m, args.seg_steps, 16, args.seed + 100 + k)
            runs.append(f1(net, held_x, held_m))
            print(f"[eval] {name} seed {k}: {runs[-1]} ({time.time() - t1:.0f}s)", flush=True)
        fs = [r["f1"] for r in runs]
        table[name] = {"f1_mean": round(float(np.mean(fs)), 4), "f1_min": min(fs), "f1_max": max(fs), "runs": runs}
    # vessel fraction: do the generated masks look like the real ones, at least in density?
    frac = {"generated masks": round(float(syn_m.mean()), 4), "real training masks": round(float(real_m.mean()), 4),
            "held-out masks": round(float(held_m.mean()), 4)}
    # pictures: 8 generated pairs beside 8 real held-out pairs
    def tile(m: np.ndarray, x: np.ndarray) -> np.ndarray:
        mm = np.repeat((m * 255).astype(np.uint8)[..., None], 3, -1)
        return np.concatenate([mm, x], 2)
    pick = np.linspace(0, len(held_x) - 1, 8).round().astype(int)
    grid = np.concatenate([tile(syn_m[:8], syn_x[:8]), tile(held_m[pick], held_x[pick])])
    buildlib.save_grid(grid, args.out / "pairs-grid.png", ncol=4, scale=2)
    return {"geometry": args.geometry, "baseline": None if not args.baseline else {
                "tree config.json sha256": buildlib.sha256_file(args.baseline / "tree" / "package" / "config.json"),
                "photo weights sha256": buildlib.sha256_file(args.baseline / "photo" / "package" / "weights.safetensors")},
            "n_synthetic_pairs": n, "n_real_pairs": n, "n_heldout_patches": int(len(held_x)),
            "synthetic_seeds": f"the pipeline's stage seeds of samples 0..{n - 1} (stage_seed(i, 'geometry') for "
                               "stage I, stage_seed(i, 'photo') for stage II, as retina-vessel-dualgan makes sample i)",
            "heldout": f"64x64 patches on a 16-px grid wholly inside the disc, rows {SPLIT_ROW}..{HALF - 1} "
                       "of the 2x-downsampled image; training patches wholly above",
            "seg_steps": args.seg_steps, "seg_batch": 16, "seg_seeds": args.seg_seeds,
            "generation_seconds": round(gen_s, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
            "segmentation_f1": table, "vessel_fraction": frac, "mask_filter_agreement": agreement}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stage", choices=["all", "tree", "mask", "photo", "eval"], default="all",
                    help="all = tree, photo, eval (1.0.0's DCGAN stage I: --stage mask, then eval with "
                         "--geometry dcgan)")
    ap.add_argument("--geometry", choices=["tree", "dcgan"], default="tree",
                    help="the stage I the evaluation uses: the fitted vessel tree (tree/package) or the DCGAN")
    ap.add_argument("--tree-random", type=int, default=100, help="stage I tree fit: random candidates")
    ap.add_argument("--tree-local", type=int, default=200, help="stage I tree fit: local candidates")
    ap.add_argument("--tree-samples", type=int, default=120, help="stage I tree fit: masks per candidate")
    ap.add_argument("--tree-space", choices=sorted(tree_fit.SPACES), default="1",
                    help="stage I tree fit: the parameter bounds (1: 1.0.0's; wide: roots, min_width, turn_sd and "
                         "branch_min_width opened)")
    ap.add_argument("--tree-version", default="1.1.0", help="the version the tree zip is named after")
    ap.add_argument("--mask-steps", type=int, default=2000)
    ap.add_argument("--photo-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--photo-batch", type=int, default=16)
    ap.add_argument("--mask-loss", choices=["bce", "hinge-sn"], default="bce",
                    help="stage I: BCE with a BatchNorm discriminator, or hinge loss with a spectral-norm one")
    ap.add_argument("--instance-noise", type=float, default=0.0,
                    help="stage I: std of Gaussian noise added to D's inputs, decaying to 0 at 3/4 of training")
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--l1-weight", type=float, default=10.0,
                    help="weight of L1 against the adversarial loss: 10 (1.1.0, BicycleGAN's), 100 (1.0.0, pix2pix's), "
                         "1 (the dual-GAN paper)")
    ap.add_argument("--consistency-sides", choices=["both", "background"], default="both",
                    help="stage II: where the consistency hinge acts: vessel and background pixels, or background only")
    ap.add_argument("--consistency-weight", type=float, default=1.0,
                    help="stage II: weight of the mask-consistency hinge (the mask filter of the generated image "
                         "against the input mask, in grey levels) on every generated image; 0 = the objective of "
                         "1.0.0 and 1.1.0 (10 was tried on 1.0.0's plain pix2pix: no clear gain)")
    ap.add_argument("--photo-z-dim", type=int, default=8,
                    help="stage II: latent code size (0 = 1.0.0's pix2pix without noise; > 0 = a cVAE-GAN whose "
                         "encoder learns the code of each real patch)")
    ap.add_argument("--photo-decoder", choices=["transpose", "resize"], default="resize",
                    help="stage II decoder: transposed convolutions (1.0.0) or upsample + 3x3 convolution")
    ap.add_argument("--tophat-weight", type=float, default=1.0,
                    help="stage II: weight of L1 between the mask filter's response (black top-hat of the smoothed "
                         "green channel, grey levels) on the generated and on the real patch")
    ap.add_argument("--kl-weight", type=float, default=0.01, help="stage II cVAE-GAN: weight of the code's KL term")
    ap.add_argument("--n-synthetic", type=int, default=1000)
    ap.add_argument("--seg-steps", type=int, default=400)
    ap.add_argument("--seg-seeds", type=int, default=5)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="eval: a build folder (tree/package, photo/package) of the previous version, whose pairs and "
                         "stage II go through the same protocol in the same run")
    ap.add_argument("--version", default="1.2.0", help="the version the zips are named after")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    im, disc, ves = prepare()
    train_c = corners(disc, (0, SPLIT_ROW))
    held_c = corners(disc, (SPLIT_ROW, HALF), stride=16)
    print("training positions", len(train_c), "held-out patches", len(held_c), flush=True)
    mpath = args.out / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
    metrics.update({"seed": args.seed, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
                    "training_positions": int(len(train_c))})
    if args.stage in ("all", "tree"):
        metrics["stage_tree"] = fit_tree(args, im, ves, train_c)
        buildlib.write_json(mpath, metrics)
    if args.stage == "mask":
        metrics["stage_mask"] = train_mask(args, im, ves, train_c)
        buildlib.write_json(mpath, metrics)
    if args.stage in ("all", "photo"):
        metrics["stage_photo"] = train_photo(args, im, ves, train_c)
        buildlib.write_json(mpath, metrics)
    if args.stage in ("all", "eval"):
        metrics["evaluation"] = evaluate(args, im, ves, train_c, held_c)
        buildlib.write_json(mpath, metrics)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
