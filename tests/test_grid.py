"""grid.image_grid: the one grid behind samples, eval grids, data previews and edit strips."""

import numpy as np
import pytest
from PIL import Image

from keras_l2mgan.grid import image_grid

pytestmark = pytest.mark.backend_independent  # NumPy and PIL only

RNG = np.random.default_rng(0)


def _tiles(rows, cols, size=8):
    return [[RNG.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(cols)]
            for _ in range(rows)]


def test_a_plain_grid_is_the_tiles_side_by_side():
    rows = _tiles(3, 4)
    expected = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    np.testing.assert_array_equal(np.asarray(image_grid(rows)), expected)


def test_frames_of_different_widths_are_packed_left_to_right():
    frames = [Image.new("RGB", (5, 4), (10, 20, 30)), Image.new("RGB", (3, 6), (40, 50, 60))]
    strip = np.asarray(image_grid([frames]))
    assert strip.shape == (6, 8, 3)
    assert (strip[:4, :5] == (10, 20, 30)).all() and (strip[4:, :5] == 255).all()
    assert (strip[:, 5:] == (40, 50, 60)).all()


def test_labels_titles_gaps_and_scale_place_each_tile():
    rows = [_tiles(1, 2)[0], []]  # a row without images keeps its place
    grid = image_grid(rows, labels=["a", "bbb"], titles=["x", "y", "z"], scale=2, gap=2)
    label_width, cell, header = 8 + 7 * 3, 16, 16
    assert grid.size == (label_width + 3 * (cell + 2), header + 2 * (cell + 2))
    pixels = np.asarray(grid)
    left = label_width + cell + 2
    np.testing.assert_array_equal(pixels[header:header + cell:2, left:left + cell:2], rows[0][1])
    assert (pixels[header + cell + 2:, label_width:] == 255).all()


def test_a_label_per_row():
    with pytest.raises(ValueError, match="1 labels for 2 rows"):
        image_grid(_tiles(2, 1), labels=["only one"])


class _FakeModel:
    """Edits as fixed arrays: the grid's layout is what is checked, not the model."""

    class config:  # noqa: N801 (stands in for L2MConfig)
        num_domains = 2

    def edit(self, images, labels, target, alpha=1.0):
        target = np.broadcast_to(np.asarray(target, np.float32), (len(images),))
        alpha = np.broadcast_to(np.asarray(alpha, np.float32), (len(images),))
        return np.tanh(images + 0.1 * target.reshape(-1, 1, 1, 1) + alpha.reshape(-1, 1, 1, 1))


def test_sample_grid_rows_are_source_edits_and_alpha_strip():
    from keras_l2mgan.training.samples import ALPHAS, sample_grid

    images = RNG.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
    labels = np.array([0, 1, 0])
    grid = sample_grid(_FakeModel(), images, labels)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 4, (1 + 2 + len(ALPHAS)) * 4, 3)
    model = _FakeModel()
    columns = [images, model.edit(images, labels, 0), model.edit(images, labels, 1),
               *[model.edit(images, labels, (labels + 1) % 2, a) for a in ALPHAS]]
    expected = np.concatenate([np.concatenate(row, axis=1) for row in np.stack(columns, 1)])
    np.testing.assert_array_equal(grid, np.clip(np.round((expected + 1) * 127.5), 0, 255))
