"""Sample grids: each row a source image | its edit to every domain | an alpha strip 0…1.25."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_l2mgan.grid import image_grid
from keras_l2mgan.image_range import to_uint8

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
# 32 images of 64x64: a whole 4-row mini_64 grid in one edit call.
MAX_PIXELS_PER_CALL = 32 * 64 * 64


def sample_grid(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A uint8 (rows*S, cols*S, 3) grid from an L2MGAN (pass the EMA copy).

    Columns: the source, one edit (alpha 1) per domain in order, then the edit towards the
    next domain ((label + 1) mod num_domains) at each alpha in ALPHAS.
    """
    from keras import ops

    num_domains = model.config.num_domains
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    # Edited columns go through the model several at a time (one call per column took 8 % of a
    # mini_64 run on a 2-core CPU; the whole grid in one call is 3x faster), but never more
    # pixels per call than MAX_PIXELS_PER_CALL or one column: a 256 px grid edits one column per
    # call, as before, and a training run's memory peak does not grow with its samples.
    strip_target = (labels + 1) % num_domains
    targets = [np.full_like(labels, domain) for domain in range(num_domains)]
    targets += [strip_target] * len(ALPHAS)
    alphas = [1.0] * num_domains + list(ALPHAS)
    n = len(images)
    pixels_per_column = n * images.shape[1] * images.shape[2]
    per_call = max(1, MAX_PIXELS_PER_CALL // pixels_per_column)  # columns per edit call
    columns = [images]
    for first in range(0, len(targets), per_call):
        chunk = range(first, min(first + per_call, len(targets)))
        edited = ops.convert_to_numpy(model.edit(
            np.concatenate([images] * len(chunk)), np.concatenate([labels] * len(chunk)),
            np.concatenate([targets[c] for c in chunk]),
            np.concatenate([np.full(n, alphas[c], np.float32) for c in chunk])))
        columns += np.split(edited, len(chunk))
    rows = to_uint8(np.stack(columns, axis=1))  # (rows, cols, S, S, 3)
    return np.asarray(image_grid(list(rows)))


def write_png(grid: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 image atomically, creating its folder."""
    from PIL import Image

    from keras_l2mgan.photo import save_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_atomic(Image.fromarray(grid), path, image_format="PNG")
