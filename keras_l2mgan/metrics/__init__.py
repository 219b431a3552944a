"""Edit quality: PSNR/SSIM, FID/KID, an independent attribute classifier, and `l2m eval`.

Submodules: image (PSNR, SSIM), distribution (FID, KID), classifier (the attribute CNN),
features (InceptionV3 or classifier features), synthetic (test split and ground-truth edits),
registry (the named metrics and their JSONL history), evaluate (the protocols and the
registered metrics), report (JSON, Markdown, image grid). FLOP counting is in benchmarks/.
"""

from keras_l2mgan.metrics.distribution import fid, frechet_distance, kid
from keras_l2mgan.metrics.image import psnr, ssim

__all__ = ["fid", "frechet_distance", "kid", "psnr", "ssim"]
