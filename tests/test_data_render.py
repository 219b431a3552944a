"""The synthetic-face renderer: determinism, attribute balance, ground-truth edits and masks."""

from __future__ import annotations

import numpy as np
import pytest

from keras_l2mgan.data.synthetic_faces import (
    ATTRIBUTES,
    NUM_PARAMS,
    attribute_mask,
    flip,
    render,
    sample_params,
)

pytestmark = pytest.mark.backend_independent


def test_render_shape_dtype_and_determinism():
    params = sample_params(np.random.default_rng(0))
    assert params.shape == (NUM_PARAMS,)
    for size in (32, 64, 128):
        image = render(params, size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, render(params.copy(), size))
    # Different faces are different images, and not flat.
    other = render(sample_params(np.random.default_rng(1)), 64)
    assert np.abs(render(params, 64).astype(int) - other).mean() > 10
    assert render(params, 64).std() > 20


def test_render_rejects_wrong_parameter_count():
    with pytest.raises(ValueError, match=f"shape \\({NUM_PARAMS},\\)"):
        render(np.zeros(3), 64)


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_ground_truth_edit_changes_only_the_attribute_region(attr):
    """render(flip(p, attr)) equals render(p) outside attribute_mask, and differs inside it."""
    rng = np.random.default_rng(123)
    changed_total = 0
    for params in sample_params(rng, 12):
        before, after = render(params, 64), render(flip(params, attr), 64)
        mask = attribute_mask(params, attr, 64)
        assert mask.shape == (64, 64) and mask.dtype == bool
        differs = (before != after).any(axis=-1)
        assert not (differs & ~mask).any(), f"{attr}: pixels outside the mask changed"
        assert differs.sum() >= 0.3 * mask.sum(), f"{attr}: mask much larger than the change"
        np.testing.assert_array_equal(mask, attribute_mask(flip(params, attr), attr, 64))
        changed_total += differs.sum()
    assert changed_total > 12 * 20  # every attribute visibly changes the face


def test_global_and_local_attributes():
    """Smiling, Male and Young are global (several regions); Eyeglasses stays near the eyes."""
    params = sample_params(np.random.default_rng(5), 20)
    area = {a: np.mean([attribute_mask(p, a, 64).mean() for p in params]) for a in ATTRIBUTES}
    assert area["Eyeglasses"] < 0.04
    assert area["Male"] > 0.1 and area["Young"] > 0.1
    for p in params[:5]:
        rows = np.flatnonzero(attribute_mask(p, "Smiling", 64).any(axis=1))
        assert rows.max() - rows.min() > 10  # eyes and mouth, not the mouth alone
        glasses_rows = np.flatnonzero(attribute_mask(p, "Eyeglasses", 64).any(axis=1))
        assert glasses_rows.max() - glasses_rows.min() < 16


def test_flip_and_attribute_names():
    params = sample_params(np.random.default_rng(2))
    flipped = flip(params, "smiling")  # case-insensitive
    assert flipped[0] == 1 - params[0] and np.array_equal(flipped[1:], params[1:])
    np.testing.assert_array_equal(flip(flipped, "Smiling"), params)
    with pytest.raises(ValueError, match="Blond_Hair"):
        flip(params, "Wearing_Hat")


def test_sampled_attributes_are_balanced_and_independent():
    params = sample_params(np.random.default_rng(3), 4000)
    bits = params[:, : len(ATTRIBUTES)]
    assert set(np.unique(bits)) == {0.0, 1.0}
    np.testing.assert_allclose(bits.mean(axis=0), 0.5, atol=0.04)
    correlation = np.corrcoef(bits.T) - np.eye(len(ATTRIBUTES))
    assert np.abs(correlation).max() < 0.08


def test_builder_attributes_exactly_balanced_jointly():
    from keras_l2mgan.data.synthetic_faces.builder import balanced_attributes

    bits = balanced_attributes(640, seed=0, split="train")
    codes = bits @ (2 ** np.arange(len(ATTRIBUTES)))
    assert np.bincount(codes.astype(int), minlength=64).tolist() == [10] * 64
    assert not np.array_equal(bits, balanced_attributes(640, seed=0, split="test"))
