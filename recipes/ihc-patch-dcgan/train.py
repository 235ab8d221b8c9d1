"""Train ihc-patch-dcgan from scikit-image's ihc.png and build its synthmed-1 package.

    python recipes/ihc-patch-dcgan/train.py --out DIR [--steps N] [--threads 2]

Seeded, CPU only, a few minutes on 2 cores. Writes into DIR:
    package/   model.py, config.json, weights.safetensors (the package's files)
    1.0.0.zip  the artefact (sorted entries, fixed timestamps: byte-identical for the same files)
    metrics.json, grid.png (16 samples), heldout-grid.png (16 held-out real patches)

Data: skimage.data.immunohistochemistry() (ihc.png, 512x512 RGB, colonic glands, FHL2 by
DAB with haematoxylin counterstain; "No known copyright restrictions" per scikit-image).
Rows 0..383 are used for training (random 64x64 crops, random flips and rot90);
rows 384..511 are held out for evaluation only.
"""

from __future__ import annotations

import argparse
import copy
import datetime
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
sys.path.insert(0, str(HERE / "package"))
import buildlib
import model as pkg_model  # the network lives in the package (package/model.py)

VERSION = "1.0.0"
NZ, NGF, NDF, SIZE = 100, 32, 32, 64
SPLIT_ROW = 384


def load_image() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


def random_crops(img: np.ndarray, n: int, rng: np.random.Generator, augment: bool = True) -> np.ndarray:
    h, w, _ = img.shape
    ys = rng.integers(0, h - SIZE + 1, n)
    xs = rng.integers(0, w - SIZE + 1, n)
    out = np.stack([img[y:y + SIZE, x:x + SIZE] for y, x in zip(ys, xs)])
    if augment:
        k = rng.integers(0, 4, n)
        fl = rng.integers(0, 2, n)
        out = np.stack([np.rot90(o[:, ::-1] if f else o, r) for o, r, f in zip(out, k, fl)])
    return np.ascontiguousarray(out)


def make_train_g() -> nn.Sequential:
    return nn.Sequential(*pkg_model.generator_layers(NZ, NGF, 3, batchnorm=True))


class TrainD(nn.Module):
    """DCGAN discriminator with spectral normalisation instead of batch norm (hinge loss)."""

    def __init__(self) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, NDF, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(NDF, NDF * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(NDF * 4, NDF * 8, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(NDF * 8, 1, 4, 1, 0)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@torch.no_grad()
def fold_batchnorm(g: nn.Sequential, seed: int) -> dict[str, torch.Tensor]:
    """Re-estimate BN population statistics on 4096 fresh latents, then fold every BN
    into the preceding convolution: returns the inference Generator's state dict."""
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    g.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(64):
        g(torch.randn(64, NZ, 1, 1, generator=gen))
    g.eval()
    mods = list(g)
    folded: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, conv in enumerate(mods):
        if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        w = conv.weight.detach().clone()
        out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(w.shape[out_dim])
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(nxt, nn.BatchNorm2d):
            s = nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)
            shape = [1] * w.dim()
            shape[out_dim] = -1
            w = w * s.view(shape)
            b = (b - nxt.running_mean) * s + nxt.bias
        folded.append((w, b))
    inf = pkg_model.Generator(NZ, NGF, 3)
    convs = [m for m in inf.net if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == len(folded)
    for c, (w, b) in zip(convs, folded):
        c.weight.copy_(w)
        c.bias.copy_(b)
    # the folded net must reproduce the eval-mode training net
    z = torch.randn(16, NZ, 1, 1, generator=gen)
    err = (inf.eval()(z) - g(z)).abs().max().item()
    assert err < 1e-4, f"batch-norm folding changed the outputs by {err}"
    return {k: v.contiguous() for k, v in inf.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is faster than 2 on a busy 2-core machine")
    ap.add_argument("--eval-samples", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    img = load_image()
    train_img, held_img = img[:SPLIT_ROW], img[SPLIT_ROW:]

    g, d = make_train_g(), TrainD()
    g.apply(init_weights)
    d.apply(init_weights)
    g_ema = copy.deepcopy(g)
    for p in g_ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t0 = time.time()
    for step in range(1, args.steps + 1):
        real = to_tensor(random_crops(train_img, args.batch, rng))
        z = torch.randn(args.batch, NZ, 1, 1)
        fake = g(z)
        opt_d.zero_grad(set_to_none=True)
        ld = F.relu(1.0 - d(real)).mean() + F.relu(1.0 + d(fake.detach())).mean()  # hinge loss
        ld.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lg = -d(fake).mean()
        lg.backward()
        opt_g.step()
        with torch.no_grad():  # exponential moving average of G's weights (BN stats are re-estimated later)
            dec = min(0.999, (1 + step) / (10 + step))
            for pe, pn in zip(g_ema.parameters(), g.parameters()):
                pe.mul_(dec).add_(pn.detach(), alpha=1 - dec)
        if step % 100 == 0 or step == 1:
            print(f"step {step} loss_d {ld.item():.3f} loss_g {lg.item():.3f} {time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0

    # -- package ---------------------------------------------------------------
    from safetensors.torch import save_file

    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {"nz": NZ, "ngf": NGF, "size": SIZE, "channels": 3})
    save_file({k: v.half() for k, v in fold_batchnorm(g_ema, args.seed + 1).items()}, str(pkg / "weights.safetensors"))
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)

    # -- evaluate through the package itself ---------------------------------------
    m = pkg_model.build(pkg, "cpu")
    n = args.eval_samples
    gen = np.concatenate([m.sample(list(range(i, min(i + 100, n))))["image"] for i in range(0, n, 100)])
    erng = np.random.default_rng(args.seed + 2)
    held = random_crops(held_img, n, erng)
    train_ref = random_crops(train_img, n, erng)
    base = buildlib.baselines(held, erng, n)
    f_held = buildlib.patch_features(held)
    fd = {"model": buildlib.frechet(buildlib.patch_features(gen), f_held, f_held),
          "train_patches": buildlib.frechet(buildlib.patch_features(train_ref), f_held, f_held)}
    cs = {"model": buildlib.channel_stats_distance(gen, held),
          "train_patches": buildlib.channel_stats_distance(train_ref, held)}
    for k, v in base.items():
        fd[k] = buildlib.frechet(buildlib.patch_features(v), f_held, f_held)
        cs[k] = buildlib.channel_stats_distance(v, held)
    metrics = {
        "model": "ihc-patch-dcgan", "version": VERSION, "seed": args.seed, "steps": args.steps,
        "batch": args.batch, "params_generator": sum(p.numel() for p in m.net.parameters()),
        "train_seconds": round(train_s, 1), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(), "n_generated": n, "n_heldout": n,
        "train_patches_seen": args.steps * args.batch,
        "heldout_region": f"rows {SPLIT_ROW}..511 of ihc.png (512x512); training crops from rows 0..{SPLIT_ROW - 1}",
        "patch_stats_frechet": {k: round(v, 4) for k, v in fd.items()},
        "channel_stats_l2": {k: round(v, 4) for k, v in cs.items()},
        "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size,
    }
    buildlib.write_json(out / "metrics.json", metrics)
    buildlib.save_grid(gen[:16], out / "grid.png", scale=2)
    buildlib.save_grid(held[:16], out / "heldout-grid.png", scale=2)
    print(metrics)


if __name__ == "__main__":
    main()
