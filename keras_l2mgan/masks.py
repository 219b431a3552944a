"""FAN heatmaps -> the generator's two face masks (StarGAN v2's ``wing.preprocess``).

The official CelebA-HQ model (w_hpf > 0) re-injects high-passed encoder features where these
masks are on: the coarse mask (face line, brows, eyes, nose, lips) at 32 px and the fine one
(eyes and nose only) at 64 and 128 px. The recipe is the official one, step for step; it runs
in float32 whatever the compute dtype, as the thresholds and powers are sensitive.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_l2mgan.networks.fan import FAN_INPUT_SIZE, NUM_LANDMARKS

_TRUNCATE_BELOW = 0.1
_NORMALIZE_EPSILON = 1e-6


def _align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of 1-D linear interpolation with align_corners=True."""
    matrix = np.zeros((size_out, size_in), np.float32)
    if size_out == 1 or size_in == 1:
        matrix[:, 0] = 1.0
        return matrix
    source = np.arange(size_out, dtype=np.float64) * (size_in - 1) / (size_out - 1)
    low = np.minimum(np.floor(source).astype(int), size_in - 2)
    weight = source - low
    rows = np.arange(size_out)
    matrix[rows, low] = 1.0 - weight
    matrix[rows, low + 1] += weight
    return matrix


def resize_align_corners(x, size: tuple[int, int]):
    """Bilinear resize of NHWC x with align_corners=True (ops.image.resize has no such option).

    Separable, so two small matmuls against constant interpolation matrices.
    """
    rows = _align_corners_matrix(x.shape[1], size[0])
    cols = _align_corners_matrix(x.shape[2], size[1])
    x = ops.einsum("oh,nhwc->nowc", ops.convert_to_tensor(rows, x.dtype), x)
    return ops.einsum("pw,nowc->nopc", ops.convert_to_tensor(cols, x.dtype), x)


def _shift(x, rows: int):
    """Roll maps vertically: rows > 0 moves content up (row i takes row i + rows)."""
    return ops.roll(x, -rows, axis=1) if rows else x


def _channel_sum(*maps):
    return sum(ops.sum(m, axis=-1, keepdims=True) for m in maps)


def heatmaps_to_masks(heatmaps):
    """Raw FAN heatmaps (N, h, w, 98) -> (coarse, fine) masks, each (N, 256, 256, 1) in [0, 1].

    Upsample to 256 (bilinear, align_corners=True), zero values below 0.1, min-max normalise
    each map, then shift vertically and raise to a power per landmark group, and sum the maps
    of the kept groups: all of them for the coarse mask, nose and eyes for the fine one.
    """
    shape = tuple(heatmaps.shape)
    if len(shape) != 4 or shape[-1] != NUM_LANDMARKS:
        raise ValueError(f"heatmaps must have shape (batch, height, width, {NUM_LANDMARKS}), "
                         f"got {shape}")
    h = resize_align_corners(ops.cast(heatmaps, "float32"), (FAN_INPUT_SIZE, FAN_INPUT_SIZE))
    h = ops.where(h < _TRUNCATE_BELOW, ops.zeros_like(h), h)
    low = ops.min(h, axis=(1, 2), keepdims=True)
    high = ops.max(h, axis=(1, 2), keepdims=True)
    h = (h - low) / (high - low + _NORMALIZE_EPSILON)

    # Landmark channels (98-point WFLW layout). Channels 0-7, 25-32, 33, 46, 76 and 82 are
    # zeroed by the official recipe, so they are simply left out of the sums.
    chin = ops.power(h[..., 8:25], 3)
    brows = ops.power(_shift(ops.concatenate([h[..., 34:46], h[..., 47:51]], -1), -7), 2)
    nose = ops.concatenate([h[..., 51:52], _shift(h[..., 52:55], 4)], -1)
    nostrils = ops.power(_shift(h[..., 55:60], 8), 4)
    eyes = h[..., 60:76]
    eyes = ops.power(_shift(eyes, -8), 3) + _shift(eyes, -24)
    upper_lip = ops.power(_shift(h[..., 77:82], -8), 4)
    lower_lip = ops.power(_shift(h[..., 83:88], 8), 4)
    inner_lip = ops.power(_shift(h[..., 88:96], -2), 3)
    eye_centres = h[..., 96:98]

    fine = _channel_sum(nose, nostrils, eyes, eye_centres)
    coarse = fine + _channel_sum(chin, brows, upper_lip, lower_lip, inner_lip)
    return tuple(ops.clip(ops.where(ops.isnan(m), ops.zeros_like(m), m), 0.0, 1.0)
                 for m in (coarse, fine))
