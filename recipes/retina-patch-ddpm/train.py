"""Train retina-patch-ddpm from scikit-image's retina.jpg and build its synthmed-1 package.

    python recipes/retina-patch-ddpm/train.py --out DIR [--steps N] [--threads 2]

Seeded, CPU only, a few minutes on 2 cores. Writes into DIR: package/ (model.py,
config.json, weights.safetensors), 1.0.0.zip (sorted entries, fixed timestamps),
metrics.json, grid.png (16 samples: rows vessel, vessel, background, background),
heldout-grid.png.

Data: skimage.data.retina() (retina.jpg, 1411x1411 RGB colour fundus photograph of a
normal left eye, Mikael Häggström, Wikimedia Commons, CC0 1.0). Downsampled 2x (box
filter) to 706x706; 32x32 patches lying wholly inside the fundus disc (eroded by 12 px,
so no black background). Labels by a vesselness criterion: black top-hat (disk radius 6)
of the Gaussian-smoothed green channel > 6 grey levels, small specks removed; a patch is
"vessel" when >= 15% of its central 12x12 pixels are vessel, "background" when none of
its pixels are; other patches are left out. Rows >= 530 (of 706) are held out for
evaluation; training patches lie wholly above row 530.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "_common"))
sys.path.insert(0, str(HERE / "package"))
import buildlib
import model as pkg_model  # the network lives in the package (package/model.py)

VERSION = "1.0.0"
SIZE, CH, T = 32, 24, 1000
HALF = 706
SPLIT_ROW = 530
VESSEL, BACKGROUND, NULL = 0, 1, 2


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
    return im, disc, ves


def patch_index(disc: np.ndarray, ves: np.ndarray, rows: tuple[int, int]) -> dict[int, np.ndarray]:
    """Top-left corners (y, x) of labelled patches wholly inside the disc and ``rows``."""
    from numpy.lib.stride_tricks import sliding_window_view as sw

    inside = sw(disc, (SIZE, SIZE)).all(axis=(2, 3))
    vfrac_all = sw(ves, (SIZE, SIZE)).mean(axis=(2, 3))
    c0 = (SIZE - 12) // 2
    vfrac_c = sw(ves[c0:, c0:], (12, 12)).mean(axis=(2, 3))[: inside.shape[0], : inside.shape[1]]
    ok = np.zeros_like(inside)
    ok[rows[0]: rows[1] - SIZE + 1] = True
    ok &= inside
    out = {}
    out[VESSEL] = np.argwhere(ok & (vfrac_c >= 0.15))
    out[BACKGROUND] = np.argwhere(ok & (vfrac_all == 0))
    return out


def crops(im: np.ndarray, corners: np.ndarray, idx: np.ndarray, rng: np.random.Generator, augment: bool) -> np.ndarray:
    out = np.stack([im[y:y + SIZE, x:x + SIZE] for y, x in corners[idx]])
    if augment:  # flips only: rot90 would turn the fundus's illumination gradient
        fl = rng.integers(0, 2, (len(idx), 2))
        out = np.stack([o[::-1] if a else o for o, a in zip(out, fl[:, 0])])
        out = np.stack([o[:, ::-1] if a else o for o, a in zip(out, fl[:, 1])])
    return np.ascontiguousarray(out)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is faster than 2 on a busy 2-core machine")
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--eval-samples-any", type=int, default=200)
    ap.add_argument("--eval-steps", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    im, disc, ves = prepare()
    train_idx = patch_index(disc, ves, (0, SPLIT_ROW))
    held_idx = patch_index(disc, ves, (SPLIT_ROW, HALF))
    counts = {k: {"vessel": len(v[VESSEL]), "background": len(v[BACKGROUND])}
              for k, v in (("train", train_idx), ("heldout", held_idx))}
    print("patch positions", counts, flush=True)

    stats = to_tensor(np.concatenate([crops(im, train_idx[k], rng.integers(0, len(train_idx[k]), 2000), rng, False)
                                      for k in (VESSEL, BACKGROUND)]))
    mean = stats.mean((0, 2, 3)).view(1, 3, 1, 1)
    std = stats.std((0, 2, 3)).view(1, 3, 1, 1)
    print("channel mean", mean.flatten().tolist(), "std", std.flatten().tolist(), flush=True)
    net = pkg_model.UNet(CH)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    print("params", sum(p.numel() for p in net.parameters()), flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    ac = pkg_model.cosine_alphas_cumprod(T)
    ema_decay = 0.995
    t0 = time.time()
    half = args.batch // 2
    for step in range(1, args.steps + 1):
        iv = rng.integers(0, len(train_idx[VESSEL]), half)
        ib = rng.integers(0, len(train_idx[BACKGROUND]), args.batch - half)
        x = to_tensor(np.concatenate([crops(im, train_idx[VESSEL], iv, rng, True),
                                      crops(im, train_idx[BACKGROUND], ib, rng, True)]))
        y = torch.tensor([VESSEL] * half + [BACKGROUND] * (args.batch - half))
        y = torch.where(torch.rand(args.batch) < 0.15, torch.full_like(y, NULL), y)  # for CFG / "any"
        x = (x - mean) / std  # per-channel standardised: the fundus has little contrast in [-1, 1]
        t = torch.randint(0, T, (args.batch,))
        noise = torch.randn_like(x)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * x
        loss = F.mse_loss(net(xt, t, y), v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(pn.detach(), alpha=1 - d)
        if step % 100 == 0 or step == 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0

    # -- package -----------------------------------------------------------------
    from safetensors.torch import save_file

    pkg = out / "package"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    shutil.copy(HERE / "package" / "model.py", pkg / "model.py")
    buildlib.write_json(pkg / "config.json", {"size": SIZE, "ch": CH, "T": T, "schedule": "cosine",
                                              "prediction": "v", "labels": ["vessel", "background", "any"],
                                              "mean": [round(float(v), 6) for v in mean.flatten()],
                                              "std": [round(float(v), 6) for v in std.flatten()]})
    save_file({k: v.detach().half().contiguous() for k, v in ema.state_dict().items()}, str(pkg / "weights.safetensors"))
    zip_path = out / f"{VERSION}.zip"
    buildlib.deterministic_zip(pkg, zip_path)

    # -- evaluate through the package ------------------------------------------------
    m = pkg_model.build(pkg, "cpu")
    n = args.eval_samples
    erng = np.random.default_rng(args.seed + 2)
    nv = n // 2

    def gen(label: str, seeds: list[int]) -> np.ndarray:
        return np.concatenate([m.sample(seeds[i:i + 50], steps=args.eval_steps, label=label)["image"]
                               for i in range(0, len(seeds), 50)])

    t1 = time.time()
    g_v = gen("vessel", list(range(nv)))
    g_b = gen("background", list(range(nv, n)))
    g_any = gen("any", list(range(n, n + args.eval_samples_any)))
    sample_s = time.time() - t1
    h_v = crops(im, held_idx[VESSEL], erng.integers(0, len(held_idx[VESSEL]), nv), erng, True)
    h_b = crops(im, held_idx[BACKGROUND], erng.integers(0, len(held_idx[BACKGROUND]), n - nv), erng, True)
    tr_v = crops(im, train_idx[VESSEL], erng.integers(0, len(train_idx[VESSEL]), nv), erng, True)
    tr_b = crops(im, train_idx[BACKGROUND], erng.integers(0, len(train_idx[BACKGROUND]), n - nv), erng, True)
    held = np.concatenate([h_v, h_b])
    f_held = buildlib.patch_features(held)
    sets = {"model_conditional_half_vessel_half_background": np.concatenate([g_v, g_b]),
            "model_unconditional": g_any,
            "train_patches": np.concatenate([tr_v, tr_b])}
    sets.update(buildlib.baselines(held, erng, n))
    fd = {k: round(buildlib.frechet(buildlib.patch_features(v), f_held, f_held), 4) for k, v in sets.items()}
    cs = {k: round(buildlib.channel_stats_distance(v, held), 4) for k, v in sets.items()}

    # does the label do what it says? the vesselness criterion on generated patches
    def vessel_score(x: np.ndarray) -> np.ndarray:
        g = x[..., 1].astype(np.float64)
        c0 = (SIZE - 12) // 2
        return g.mean((1, 2)) - np.percentile(g[:, c0:c0 + 12, c0:c0 + 12].reshape(len(x), -1), 10, axis=1)

    label_check = {k: round(float(vessel_score(v).mean()), 3)
                   for k, v in (("generated_vessel", g_v), ("generated_background", g_b),
                                ("heldout_vessel", h_v), ("heldout_background", h_b))}
    metrics = {
        "model": "retina-patch-ddpm", "version": VERSION, "seed": args.seed, "steps": args.steps,
        "batch": args.batch, "lr": args.lr, "params": sum(p.numel() for p in net.parameters()),
        "n_generated_any": args.eval_samples_any, "train_seconds": round(train_s, 1), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(), "n_generated": n, "n_heldout": n,
        "ddim_steps": args.eval_steps, "sampling_seconds": round(sample_s, 1),
        "patch_positions": counts, "train_patches_seen": args.steps * args.batch,
        "heldout_region": f"rows {SPLIT_ROW}..{HALF - 1} of the 2x-downsampled image; training patches wholly above",
        "patch_stats_frechet": fd, "channel_stats_l2": cs,
        "label_check_green_darkness": label_check,
        "label_check_method": "mean over patches of (mean green - 10th percentile of green in the central 12x12); higher = a dark vessel crosses the centre",
        "zip_sha256": buildlib.sha256_file(zip_path), "zip_size": zip_path.stat().st_size,
    }
    buildlib.write_json(out / "metrics.json", metrics)
    buildlib.save_grid(np.concatenate([g_v[:8], g_b[:8]]), out / "grid.png", scale=3)
    buildlib.save_grid(np.concatenate([h_v[:8], h_b[:8]]), out / "heldout-grid.png", scale=3)
    print(metrics)


if __name__ == "__main__":
    main()
