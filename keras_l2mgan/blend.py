"""Blend an edit into its input where the edit changes something, keep the input elsewhere.

The generator re-draws the whole image, so even a perfect attribute change carries the
generator's reconstruction error everywhere (about 26 dB on the small demo models: a face
repainted by ~12 grey levels to change its mouth). The edit's own change is local, though:
G(x, s~) and the reconstruction G(x, s) differ only where the attribute lives. So

    change = |G(x, s~) - G(x, s)|  (mean over channels), dilated and blurred
    m = clip((change - LOW) / (HIGH - LOW), 0, 1)
    out = x + m * (G(x, s~) - x)

takes the full edit where it changes the image and the untouched input elsewhere. alpha = 0
gives s~ = s, m = 0 and x itself. LOW and HIGH are the model's own
(``L2MConfig.blend_grey_levels``, 6 and 16 unless set), picked on the synthetic test faces
(`python tools/blend_sweep.py`); the official models leave the blend off
(``L2MConfig.blend_changes``), `l2m train` turns it on.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from keras_l2mgan.config import DEFAULT_BLEND_GREY_LEVELS

# Change (in grey levels of 255) below which the input is kept and above which the edit is.
LOW_GREY_LEVELS, HIGH_GREY_LEVELS = DEFAULT_BLEND_GREY_LEVELS
# At 64 px: dilate by a 3x3 max, blur with sigma 1 px; both scale with the image size.
REFERENCE_SIZE = 64


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    return np.outer(taps, taps).astype(np.float32)[:, :, None, None]


def change_mask(edited, reconstruction, low: float = LOW_GREY_LEVELS,
                high: float = HIGH_GREY_LEVELS, dilate_px: int = 1, blur_px: float = 1.0):
    """(N, S, S, 1) float32 in [0, 1]: where `edited` differs from `reconstruction` (both
    [-1, 1] images of the same input). `low`/`high` are grey levels of 255; the dilation
    radius and blur sigma are in pixels at 64 px and scale with the image size."""
    edited, reconstruction = ops.cast(edited, "float32"), ops.cast(reconstruction, "float32")
    scale = edited.shape[1] / REFERENCE_SIZE
    change = ops.mean(ops.abs(edited - reconstruction), axis=-1, keepdims=True) * 127.5
    if dilate_px > 0:
        window = 2 * max(1, round(dilate_px * scale)) + 1
        change = ops.max_pool(change, window, strides=1, padding="same")
    if blur_px > 0:
        kernel = ops.convert_to_tensor(_gaussian_kernel(max(blur_px * scale, 0.5)))
        change = ops.conv(change, kernel, strides=1, padding="same")
    return ops.clip((change - low) / (high - low), 0.0, 1.0)


def blend_changes(x, edited, reconstruction, low: float = LOW_GREY_LEVELS,
                  high: float = HIGH_GREY_LEVELS):
    """The edit where it changes the reconstruction, the input x elsewhere (see module doc)."""
    mask = ops.cast(change_mask(edited, reconstruction, low, high), edited.dtype)
    x = ops.cast(x, edited.dtype)
    return x + mask * (edited - x)
