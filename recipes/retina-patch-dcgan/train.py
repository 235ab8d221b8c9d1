"""Train retina-patch-dcgan, an unconditional DCGAN baseline on the data of
retina-patch-ddpm, at about the same training compute, and build its synthmed-1 package.

    python recipes/retina-patch-dcgan/train.py --out DIR [--steps N] [--threads 1]

Seeded, CPU only. Hinge loss, spectral-norm discriminator (3 strided convs), resize-conv
generator with batch norms (run in eval mode at inference, population statistics
re-estimated on 4096 latents), EMA of the generator's weights. Data: the patches of
recipes/retina-patch-ddpm/train.py (imported from it), vessel and background alike
(the GAN is unconditional), rows >= 530 held out. The default step count was chosen so
that training costs about the CPU time retina-patch-ddpm's training took (320 s on one
thread); the CPU seconds used are written to train.json.

Writes into DIR: package/ (model.py, config.json, weights.safetensors), 1.0.0.zip,
train.json (and the same as metrics.json, for recipes/publish.py), grid.png.
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
import buildlib


pkg_model = buildlib.load_module("retina_dcgan_model", HERE / "package" / "model.py")
data = buildlib.load_module("retina_ddpm_train_gan", HERE.parent / "retina-patch-ddpm" / "train.py")

VERSION = "1.0.0"
NZ, NGF, NDF = 100, 48, 48


class TrainD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, NDF, 4, 2, 1)), nn.LeakyReLU(0.2, True),          # 16
            sn(nn.Conv2d(NDF, NDF * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True),    # 8
            sn(nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1)), nn.LeakyReLU(0.2, True),  # 4
            sn(nn.Conv2d(NDF * 4, 1, 4, 1, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1650)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    im, disc, ves = data.prepare()
    idx = data.patch_index(disc, ves, (0, data.SPLIT_ROW))
    g, d = pkg_model.Generator(NZ, NGF), TrainD()
    for m in list(g.modules()) + list(d.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not hasattr(m, "weight_orig"):
            nn.init.normal_(m.weight, 0.0, 0.02)
    g_ema = copy.deepcopy(g)
    for p in g_ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    c0, w0 = time.process_time(), time.time()
    for step in range(1, args.steps + 1):
        half = args.batch // 2
        iv = rng.integers(0, len(idx[data.VESSEL]), half)
        ib = rng.integers(0, len(idx[data.BACKGROUND]), args.batch - half)
        real = data.to_tensor(np.concatenate([data.crops(im, idx[data.VESSEL], iv, rng, True),
                                              data.crops(im, idx[data.BACKGROUND], ib, rng, True)]))
        fake = g(torch.randn(args.batch, NZ, 1, 1))
        opt_d.zero_grad(set_to_none=True)
        ld = F.relu(1.0 - d(real)).mean() + F.relu(1.0 + d(fake.detach())).mean()
        ld.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lg = -d(fake).mean()
        lg.backward()
        opt_g.step()
        with torch.no_grad():
            dec = min(0.999, (1 + step) / (10 + step))
            for pe, pn in zip(g_ema.parameters(), g.parameters()):
                pe.mul_(dec).add_(pn.detach(), alpha=1 - dec)
        if step % 250 == 0 or step == 1:
            print(f"step {step} loss_d {ld.item():.3f} loss_g {lg.item():.3f} {time.process_time() - c0:.0f} cpu-s",
                  flush=True)
    cpu_s, wall_s = time.process_time() - c0, time.time() - w0
    with torch.no_grad():  # population statistics for the EMA generator's batch norms
        for bn in (m for m in g_ema.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None
        g_ema.train()
        gen = torch.Generator().manual_seed(args.seed + 1)
        for _ in range(64):
            g_ema(torch.randn(64, NZ, 1, 1, generator=gen))
        g_ema.eval()
    from safetensors.torch import save_file

    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {"nz": NZ, "ngf": NGF, "size": 32, "channels": 3})
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in g_ema.state_dict().items()}
    save_file(state, str(pkg / "weights.safetensors"))
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)
    m = pkg_model.build(pkg, "cpu")
    buildlib.save_grid(m.sample(list(range(16)))["image"], out / "grid.png", scale=3)
    info = {"model": "retina-patch-dcgan", "version": VERSION, "seed": args.seed, "steps": args.steps,
            "batch": args.batch, "params_generator": sum(p.numel() for p in g.parameters()),
            "params_discriminator": sum(p.numel() for p in d.parameters()),
            "train_cpu_seconds": round(cpu_s, 1), "train_wall_seconds": round(wall_s, 1), "threads": args.threads,
            "train_patches_seen": args.steps * args.batch, "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
            "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size}
    buildlib.write_json(out / "train.json", info)
    buildlib.write_json(out / "metrics.json", info)  # what publish.py copies (no recipe-side metrics: see synthmed evaluate)
    print(info, flush=True)


if __name__ == "__main__":
    main()
