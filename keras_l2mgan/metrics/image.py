"""Per-image fidelity: PSNR and SSIM on uint8-range images, optionally restricted to a mask.

Images are (N, H, W, C) or (H, W, C) arrays in [0, 255]. SSIM follows Wang et al. (2004):
an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering (no padding),
computed per channel and averaged, as tf.image.ssim and the reference MATLAB code do.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DATA_RANGE = 255.0
MAX_PSNR = 100.0  # reported for identical images (infinite PSNR)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5


def _batch(images) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C) or (H, W, C), got shape {x.shape}")
    return x


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _batch(a), _batch(b)
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _mask(mask, shape) -> np.ndarray:
    """A boolean (N, H, W) mask for images of `shape` (N, H, W, C)."""
    m = np.asarray(mask, bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, shape[:3])
    if m.shape != tuple(shape[:3]):
        raise ValueError(f"mask must be (H, W) or (N, H, W) matching {shape[:3]}, got {m.shape}")
    return m


def _psnr_from_mse(mse: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(DATA_RANGE**2 / mse)
    return np.minimum(value, MAX_PSNR)


def psnr(a, b, mask=None) -> np.ndarray:
    """PSNR in dB of each image pair, (N,); with a mask, over the pixels where it is True.

    Identical images (or an empty mask) give MAX_PSNR.
    """
    a, b = _pair(a, b)
    squared = (a - b) ** 2
    if mask is None:
        mse = squared.mean(axis=(1, 2, 3))
    else:
        weights = _mask(mask, a.shape)[..., None].astype(np.float64)
        count = weights.sum(axis=(1, 2, 3)) * a.shape[-1]
        mse = (squared * weights).sum(axis=(1, 2, 3)) / np.maximum(count, 1)
    return _psnr_from_mse(mse)


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian; SSIM's 2-D window is its outer product with itself."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering over H and W of (N, H, W, C)."""
    out = ndimage.correlate1d(x, window, axis=1, mode="constant")
    out = ndimage.correlate1d(out, window, axis=2, mode="constant")
    pad = len(window) // 2
    return out[:, pad:-pad, pad:-pad, :]


def ssim_map(a, b) -> np.ndarray:
    """The SSIM map (N, H - 10, W - 10): per window position, averaged over channels."""
    a, b = _pair(a, b)
    if min(a.shape[1:3]) < WINDOW_SIZE:
        raise ValueError(f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels, "
                         f"got {a.shape[1]}x{a.shape[2]}")
    window = gaussian_window()
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean(axis=-1)


def ssim(a, b, mask=None) -> np.ndarray:
    """SSIM of each image pair, (N,); with a mask, the mean of the SSIM map over the window
    centres where the mask is True (1.0 where none is)."""
    values = ssim_map(a, b)
    if mask is None:
        return values.mean(axis=(1, 2))
    pad = WINDOW_SIZE // 2
    m = _mask(mask, _batch(a).shape)[:, pad:-pad, pad:-pad].astype(np.float64)
    count = m.sum(axis=(1, 2))
    return np.where(count > 0, (values * m).sum(axis=(1, 2)) / np.maximum(count, 1), 1.0)
