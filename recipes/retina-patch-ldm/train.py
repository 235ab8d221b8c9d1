"""Train retina-patch-ldm (a Medfusion-style latent diffusion model) on the data of
retina-patch-ddpm and build its synthmed-1 package.

    python recipes/retina-patch-ldm/train.py --out DIR [--vae-steps N] [--ldm-steps N] [--threads 1]
    python recipes/retina-patch-ldm/train.py --out DIR --eval-only   # the autoencoder metrics again

Seeded, CPU only. Two stages, as in Medfusion (Müller-Franzes et al., 2023): a small VAE
(32x32x3 -> 8x8x4, downsampling 4; L1 + MSE reconstruction + a small KL term), then a
class-conditional DDPM on the VAE's latents (UNet, v-prediction, cosine schedule,
15% null labels for classifier-free guidance); DDIM sampling. Medfusion's VAE also has a
perceptual and an adversarial loss; this one does not (no pretrained network here, and a
few minutes of CPU).

Data, labels and the held-out split are those of recipes/retina-patch-ddpm/train.py
(imported from it): 32x32 patches of scikit-image's retina.jpg (CC0), labelled vessel /
background, rows >= 530 held out. The default step counts were chosen so that the whole
training (both stages) costs about the CPU time that retina-patch-ddpm's training took
(320 s on one thread); the CPU seconds each stage used are written to metrics.json.

Writes into DIR: package/ (model.py, config.json, weights.safetensors), 1.0.0.zip,
train.json (what was trained, CPU and wall seconds), metrics.json (autoencoder PSNR and
MS-SSIM on held-out patches, computed with synthmed.registry.measuring.metrics), grid.png,
recon-grid.png (held-out patches over their reconstructions).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "_common"))
import buildlib


pkg_model = buildlib.load_module("retina_ldm_model", HERE / "package" / "model.py")
data = buildlib.load_module("retina_ddpm_train", HERE.parent / "retina-patch-ddpm" / "train.py")  # prepare, patch_index, crops

VERSION = "1.0.0"
SIZE, T, ZC, VAE_CH, UNET_CH = 32, 1000, 4, 32, 48
VESSEL, BACKGROUND, NULL = data.VESSEL, data.BACKGROUND, data.NULL


def batch(im: np.ndarray, idx: dict[int, np.ndarray], rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = n // 2
    iv = rng.integers(0, len(idx[VESSEL]), half)
    ib = rng.integers(0, len(idx[BACKGROUND]), n - half)
    x = data.to_tensor(np.concatenate([data.crops(im, idx[VESSEL], iv, rng, True),
                                       data.crops(im, idx[BACKGROUND], ib, rng, True)]))
    y = torch.tensor([VESSEL] * half + [BACKGROUND] * (n - half))
    return x, y


def train(args: argparse.Namespace, out: Path) -> None:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    im, disc, ves = data.prepare()
    train_idx = data.patch_index(disc, ves, (0, data.SPLIT_ROW))
    stats = data.to_tensor(np.concatenate([data.crops(im, train_idx[k], rng.integers(0, len(train_idx[k]), 2000), rng, False)
                                           for k in (VESSEL, BACKGROUND)]))
    mean = stats.mean((0, 2, 3)).view(1, 3, 1, 1)
    std = stats.std((0, 2, 3)).view(1, 3, 1, 1)

    # -- stage 1: the VAE ------------------------------------------------------------
    vae = pkg_model.VAE(VAE_CH, ZC)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.vae_lr, total_steps=args.vae_steps, pct_start=0.05)
    c0, w0 = time.process_time(), time.time()
    for step in range(1, args.vae_steps + 1):
        x, _ = batch(im, train_idx, rng, args.batch)
        xs = (x - mean) / std
        mu, logvar = vae.encode(xs)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = vae.decode(z)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = F.l1_loss(rec, xs) + F.mse_loss(rec, xs) + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == 1:
            print(f"vae step {step} loss {loss.item():.4f} kl {kl.item():.3f} {time.process_time() - c0:.0f} cpu-s", flush=True)
    vae_cpu, vae_wall = time.process_time() - c0, time.time() - w0
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # latent scale: the std of posterior means over training patches
        zs = torch.cat([vae.encode((batch(im, train_idx, rng, 256)[0] - mean) / std)[0] for _ in range(8)])
        scale = float(zs.std())
    print("latent scale", scale, flush=True)

    # -- stage 2: the latent DDPM ----------------------------------------------------
    net = pkg_model.LatentUNet(UNET_CH, ZC)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.ldm_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.ldm_lr, total_steps=args.ldm_steps, pct_start=0.05)
    ac = pkg_model.cosine_alphas_cumprod(T)
    c1, w1 = time.process_time(), time.time()
    for step in range(1, args.ldm_steps + 1):
        x, y = batch(im, train_idx, rng, args.batch)
        with torch.no_grad():
            mu, logvar = vae.encode((x - mean) / std)
            z0 = (mu + torch.randn_like(mu) * (0.5 * logvar).exp()) / scale
        y = torch.where(torch.rand(args.batch) < 0.15, torch.full_like(y, NULL), y)
        t = torch.randint(0, T, (args.batch,))
        noise = torch.randn_like(z0)
        a = ac[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * z0
        loss = F.mse_loss(net(zt, t, y), v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(0.999, (1 + step) / (10 + step))
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(pn.detach(), alpha=1 - d)
        if step % 500 == 0 or step == 1:
            print(f"ldm step {step} loss {loss.item():.4f} {time.process_time() - c1:.0f} cpu-s", flush=True)
    ldm_cpu, ldm_wall = time.process_time() - c1, time.time() - w1

    from safetensors.torch import save_file

    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {
        "size": SIZE, "z_channels": ZC, "vae_ch": VAE_CH, "unet_ch": UNET_CH, "T": T, "schedule": "cosine",
        "prediction": "v", "labels": ["vessel", "background", "any"], "latent_scale": round(scale, 6),
        "mean": [round(float(v), 6) for v in mean.flatten()], "std": [round(float(v), 6) for v in std.flatten()]})
    state = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    state.update({f"unet.{k}": v for k, v in ema.state_dict().items()})
    save_file({k: v.detach().half().contiguous() for k, v in state.items()}, str(pkg / "weights.safetensors"))
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)
    info = {"model": "retina-patch-ldm", "version": VERSION, "seed": args.seed, "batch": args.batch,
            "vae_steps": args.vae_steps, "ldm_steps": args.ldm_steps, "vae_lr": args.vae_lr, "ldm_lr": args.ldm_lr,
            "kl_weight": args.kl, "threads": args.threads,
            "params_vae": sum(p.numel() for p in vae.parameters()),
            "params_unet": sum(p.numel() for p in net.parameters()),
            "train_cpu_seconds": {"vae": round(vae_cpu, 1), "ldm": round(ldm_cpu, 1), "total": round(vae_cpu + ldm_cpu, 1)},
            "train_wall_seconds": {"vae": round(vae_wall, 1), "ldm": round(ldm_wall, 1)},
            "train_patches_seen": (args.vae_steps + args.ldm_steps) * args.batch,
            "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size}
    buildlib.write_json(out / "train.json", info)
    print(info, flush=True)


def evaluate_autoencoder(args: argparse.Namespace, out: Path) -> None:
    """PSNR and MS-SSIM of the VAE's reconstructions of held-out patches (synthmed.registry.measuring.metrics)."""
    from synthmed.registry.measuring import metrics as sm

    m = pkg_model.build(out / "package", "cpu")
    im, disc, ves = data.prepare()
    held = data.patch_index(disc, ves, (data.SPLIT_ROW, data.HALF))
    erng = np.random.default_rng(args.seed + 2)
    n = args.eval_samples
    real = np.concatenate([data.crops(im, held[VESSEL], erng.integers(0, len(held[VESSEL]), n // 2), erng, False),
                           data.crops(im, held[BACKGROUND], erng.integers(0, len(held[BACKGROUND]), n - n // 2), erng, False)])
    rec = m.to_uint8(m.reconstruct(data.to_tensor(real)))
    ae = sm.autoencoder_metrics(real, rec, data_range=255.0)
    info = json.loads((out / "train.json").read_text())
    info["autoencoder"] = {**ae, "n": int(len(real)), "data": "held-out patches (rows >= 530), half vessel, half background",
                           "images": "uint8 RGB, (N, 32, 32, 3), compared in 0..255 with data_range 255"}
    buildlib.write_json(out / "metrics.json", info)
    pairs = np.concatenate([real[:8], rec[:8], real[n // 2:n // 2 + 8], rec[n // 2:n // 2 + 8]])
    buildlib.save_grid(pairs, out / "recon-grid.png", scale=3)
    s = m.sample(list(range(8)), steps=25, label="vessel")["image"]
    b = m.sample(list(range(8, 16)), steps=25, label="background")["image"]
    buildlib.save_grid(np.concatenate([s, b]), out / "grid.png", scale=3)
    print(info["autoencoder"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--ldm-steps", type=int, default=2200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--ldm-lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.eval_only:
        train(args, out)
    evaluate_autoencoder(args, out)


if __name__ == "__main__":
    main()
