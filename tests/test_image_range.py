"""image_range: the one [-1, 1] <-> uint8 conversion, the same in NumPy, keras.ops and TF."""

import numpy as np
import pytest

from keras_l2mgan import image_range

PIXELS = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)


def test_every_pixel_value_survives_the_round_trip():
    unit = image_range.to_unit(PIXELS)
    assert unit.dtype == np.float32 and unit.min() == -1.0 and unit.max() == 1.0
    np.testing.assert_array_equal(image_range.to_uint8(unit), PIXELS)


def test_out_of_range_values_are_clipped_and_rounded_to_nearest():
    images = np.array([-3.0, -1.0, 1.0, 2.5, 0.0, 0.003], np.float32)
    np.testing.assert_array_equal(image_range.to_uint8(images), [0, 0, 255, 255, 128, 128])
    np.testing.assert_array_equal(image_range.to_unit(np.array([-20.0, 300.0])), [-1.0, 1.0])
    np.testing.assert_array_equal(image_range.round_to_uint8([-0.6, 0.4, 0.6, 254.6, 999.0]),
                                  [0, 0, 1, 255, 255])


def test_the_tensor_versions_agree_with_numpy():
    from keras import ops

    rng = np.random.default_rng(0)
    images = rng.uniform(-1.2, 1.2, (2, 8, 8, 3)).astype(np.float32)
    expected = image_range.to_uint8(images)
    tensor = ops.convert_to_numpy(image_range.to_uint8_tensor(ops.convert_to_tensor(images)))
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor, expected)
    unit = ops.convert_to_numpy(image_range.to_unit_tensor(ops.convert_to_tensor(PIXELS)))
    # XLA (JAX) divides by a constant as a multiplication by its reciprocal: one ulp apart.
    np.testing.assert_allclose(unit, image_range.to_unit(PIXELS), rtol=0, atol=2e-7)


@pytest.mark.backend_independent  # tf as a library: tf.data runs it under every backend
def test_the_tf_versions_agree_with_numpy():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = rng.uniform(-1.2, 1.2, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(image_range.to_uint8_tf(tf.constant(images)).numpy(),
                                  image_range.to_uint8(images))
    np.testing.assert_array_equal(image_range.to_unit_tf(tf.constant(PIXELS)).numpy(),
                                  image_range.to_unit(PIXELS))
