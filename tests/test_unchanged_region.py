"""The unchanged-region term (issue 11): the renderer's masks of what no trained attribute
changes, their way through the in-memory batches, and the loss on them."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from keras_l2mgan.data.memory import MemoryBatches, unchanged_masks
from keras_l2mgan.data.synthetic_faces import renderer
from keras_l2mgan.metrics import synthetic


@pytest.mark.backend_independent  # rendered faces and a cache file
def test_unchanged_masks_hold_only_pixels_that_no_flip_changes(tmp_path):
    params = synthetic.split_params("train", 6)
    masks = unchanged_masks(params, ["Smiling", "Male"], 32, tmp_path, workers=1)
    assert masks.shape == (6, 32, 32) and masks.dtype == np.uint8
    assert 0.2 < masks.mean() < 0.95  # the background and most of the face, not all of it
    for face, mask in zip(params, masks, strict=True):
        before = renderer.render(face, 32)
        for attr in ("Smiling", "Male"):
            after = renderer.render(renderer.flip(face, attr), 32)
            changed = np.abs(before.astype(int) - after).max(axis=-1) > 0
            assert changed.any() and not (changed & (mask == 1)).any()
    assert [p.name for p in tmp_path.iterdir()] == ["unchanged_6_32px_smiling_male.npz"]
    np.testing.assert_array_equal(
        unchanged_masks(params, ["Smiling", "Male"], 32, tmp_path), masks)  # from the cache


def _stream_with_masks(augment=True):
    rng = np.random.default_rng(2)
    masks = (rng.random((12, 16, 16)) < 0.5).astype(np.uint8)
    images = np.repeat(masks[..., None] * np.uint8(255), 3, axis=-1)  # an image of its mask
    return MemoryBatches(images, np.arange(12) % 2, num_domains=2, batch_size=6, seed=3,
                         augment=augment, masks=masks)


@pytest.mark.backend_independent  # NumPy batches
def test_masks_are_cropped_and_flipped_with_their_images():
    stream, plain = _stream_with_masks(), _stream_with_masks(augment=False)
    for index in range(4):
        batch = stream.batch(index)
        assert batch["unchanged_masks"].shape == (6, 16, 16, 1)
        np.testing.assert_allclose((batch["images"][..., :1] + 1) / 2,
                                   batch["unchanged_masks"], atol=1e-6)
    augmented = np.stack([stream.batch(i)["unchanged_masks"] for i in range(4)])
    unaugmented = np.stack([plain.batch(i)["unchanged_masks"] for i in range(4)])
    assert not np.array_equal(augmented, unaugmented)  # the masks were moved, with the images


@pytest.mark.backend_independent  # tf.data of the NumPy stream
def test_tf_dataset_is_the_same_stream_with_static_shapes():
    stream = _stream_with_masks().skip(2)
    dataset = stream.as_tf_dataset()
    assert all(spec.shape.is_fully_defined() for spec in dataset.element_spec.values())
    for index, batch in zip((2, 3), dataset.take(2).as_numpy_iterator(), strict=True):
        expected = stream.batch(index)
        assert batch.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(batch[key], expected[key])


def test_unchanged_region_term_is_the_masked_l1_of_the_edit_against_the_reconstruction():
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.losses import LossWeights, generator_loss
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(get_preset("tiny_32"))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    mask = (rng.random((2, 32, 32, 1)) < 0.3).astype("float32")
    source, target = np.array([0, 1], "int32"), np.array([1, 1], "int32")
    without, logs = generator_loss(model, x, source, target, LossWeights())
    assert "g_unchanged" not in logs  # off by default
    weights = LossWeights(unchanged_region=3.0)
    with pytest.raises(ValueError, match="unchanged_masks"):
        generator_loss(model, x, source, target, weights)
    with_term, logs = generator_loss(model, x, source, target, weights, unchanged_masks=mask)
    edit = ops.convert_to_numpy(model.edit(x, source, target, 1.0))
    reconstruction = ops.convert_to_numpy(model.edit(x, source, source, 0.0))
    expected = (mask * np.abs(edit - reconstruction)).sum() / (mask.sum() * 3)
    assert float(ops.convert_to_numpy(logs["g_unchanged"])) == pytest.approx(expected, rel=1e-4)
    assert float(ops.convert_to_numpy(with_term)) == pytest.approx(
        float(ops.convert_to_numpy(without)) + 3.0 * expected, rel=1e-4)


@pytest.mark.backend_independent  # option checks, no backend
def test_the_term_needs_the_in_memory_synthetic_faces():
    from keras_l2mgan.training.run import TrainOptions, validate_options

    validate_options(TrainOptions(data="synthetic_memory", loss_weights={"unchanged_region": 1}))
    with pytest.raises(ValueError, match="--data synthetic_memory"):
        validate_options(TrainOptions(data="synthetic", loss_weights={"unchanged_region": 1}))
