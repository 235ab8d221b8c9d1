"""Image-generation metrics, pure numpy: the distances between feature sets
(:mod:`.features`: Fréchet distance, KID, precision/recall, density/coverage, RBF MMD)
and the pixel metrics (:mod:`.pixels`: PSNR, SSIM, MS-SSIM, MS-SSIM diversity).

Every function takes explicit parameters (``k``, subsets, the data range, the kernel's
bandwidth) and none has hidden state; :data:`IMPLEMENTATION` names this implementation in
the provenance of every measured value (bump its version when a formula changes).
"""

from .features import fid_stats, frechet_distance, frechet_from_stats, kid, mmd_rbf, prdc
from .pixels import autoencoder_metrics, ms_ssim, ms_ssim_diversity, psnr, ssim

IMPLEMENTATION = {"name": "synthmed.registry.measuring.metrics", "version": "2"}

__all__ = ["IMPLEMENTATION", "autoencoder_metrics", "fid_stats", "frechet_distance", "frechet_from_stats", "kid",
           "mmd_rbf", "ms_ssim", "ms_ssim_diversity", "prdc", "psnr", "ssim"]
