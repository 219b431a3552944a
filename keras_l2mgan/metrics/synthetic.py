"""The synthetic faces splits as numpy arrays, and the ground truth of an edit.

The faces are rebuilt from the TFDS builder's own functions (balanced attributes, then one
random stream per example), so image i here is example i of the `synthetic_faces` split with
the same size, count and seed, without building or reading the dataset.
"""

from __future__ import annotations

import numpy as np

from keras_l2mgan.data.synthetic_faces import renderer


def split_params(split: str = "test", num: int | None = None, seed: int = 0) -> np.ndarray:
    """(num, NUM_PARAMS) render parameters of a split (default size: the builder's default)."""
    if split not in ("train", "test"):
        raise ValueError(f"synthetic faces have splits 'train' and 'test', got {split!r}")
    if num is None:
        num = renderer.DEFAULT_NUM_TRAIN if split == "train" else renderer.DEFAULT_NUM_TEST
    if num < 1:
        raise ValueError(f"the number of synthetic faces must be >= 1, got {num}")
    attributes = renderer.balanced_attributes(num, seed, split)
    return np.stack([renderer.example_params(seed, split, i, attributes[i]) for i in range(num)])


def render(params: np.ndarray, img_size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) images of (N, NUM_PARAMS) parameters."""
    return renderer.render_batch(params, img_size)


def attribute_values(params: np.ndarray, attrs: list[str]) -> np.ndarray:
    """0/1 int (N, len(attrs)) values of the named attributes."""
    index = [renderer.attribute_index(a) for a in attrs]
    return (np.asarray(params)[:, index] >= 0.5).astype(np.int32)


def ground_truth(params: np.ndarray, flips: list[str], img_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The rendered edits with every attribute in `flips` negated, and (N, S, S) masks of the
    pixels the edit may change (the union over the successive single flips: a pixel equal
    before and after each flip is equal before and after all of them)."""
    images, masks = [], []
    for p in np.asarray(params, np.float32):
        mask = np.zeros((img_size, img_size), bool)
        for attr in flips:
            mask |= renderer.attribute_mask(p, attr, img_size)
            p = renderer.flip(p, attr)
        images.append(renderer.render(p, img_size))
        masks.append(mask)
    return np.stack(images), np.stack(masks)
