"""training.samples on a real model, on every backend."""

import keras
import numpy as np
import pytest

from keras_l2mgan.config import get_preset
from keras_l2mgan.image_range import to_uint8
from keras_l2mgan.model import L2MGAN
from keras_l2mgan.training import samples
from keras_l2mgan.training.samples import ALPHAS, sample_grid


@pytest.mark.parametrize("columns_per_call", [None, 3])
def test_sample_grid_matches_one_edit_per_column(columns_per_call, monkeypatch):
    """The grid edits its columns in batches (all 10 at once, or 3 + 3 + 3 + 1 under a smaller
    pixel cap): the pixels of one call per column."""
    if columns_per_call is not None:
        monkeypatch.setattr(samples, "MAX_PIXELS_PER_CALL", columns_per_call * 2 * 32 * 32)
    model = L2MGAN(get_preset("tiny_32").replace(num_domains=3))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 2])
    grid = sample_grid(model, images, labels).astype(int)
    columns = [model.edit(images, labels, domain) for domain in range(3)]
    columns += [model.edit(images, labels, (labels + 1) % 3, alpha) for alpha in ALPHAS]
    columns = [images] + [keras.ops.convert_to_numpy(column) for column in columns]
    rows = to_uint8(np.stack(columns, axis=1)).astype(int)  # (rows, cols, S, S, 3)
    expected = np.concatenate([np.concatenate(list(row), axis=1) for row in rows])
    assert grid.shape == expected.shape
    assert np.abs(grid - expected).max() <= 1  # float round-off between batch sizes
