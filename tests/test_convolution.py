"""The networks' convolution hook (trainers/*.convolution): equal to keras.ops.conv in value on
every backend, and on JAX, whose kernel gradient is hand-written, in first and second
derivatives too (R1 differentiates a gradient)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import current_backend
from keras import ops

from keras_l2mgan.trainers import current_trainer

# (input size, channels in, channels out, kernel, padding): the shapes the networks use.
CASES = [(8, 3, 4, 3, "same"), (8, 4, 5, 1, "same"), (4, 4, 3, 4, "valid"), (6, 2, 3, 4, "same")]


def _data(size, channels_in, channels_out, taps, dtype="float32"):
    rng = np.random.default_rng(size * 100 + taps)
    x = rng.standard_normal((2, size, size, channels_in)).astype(dtype)
    kernel = (rng.standard_normal((taps, taps, channels_in, channels_out)) * 0.3).astype(dtype)
    return x, kernel


@pytest.mark.parametrize("case", CASES)
def test_convolution_equals_keras_conv(case):
    size, channels_in, channels_out, taps, padding = case
    x, kernel = _data(size, channels_in, channels_out, taps)
    ours = current_trainer().convolution(x, ops.convert_to_tensor(kernel), padding)
    reference = ops.conv(x, kernel, strides=1, padding=padding)
    np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(reference),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_jax_convolution_gradients_equal_xla_ones(case):
    if current_backend() != "jax":
        pytest.skip("the hand-written gradient is JAX's")
    import jax
    import jax.numpy as jnp

    size, channels_in, channels_out, taps, padding = case
    x, kernel = _data(size, channels_in, channels_out, taps)

    def penalty(convolve):  # R1's shape: a loss of the input gradient, differentiated again
        def loss(kernel, x):
            input_gradient = jax.grad(lambda x: jnp.sum(jnp.sin(convolve(x, kernel))))(x)
            return jnp.sum(input_gradient ** 2) + jnp.sum(convolve(x, kernel) ** 2)
        return jax.jit(jax.grad(loss, argnums=(0, 1)))

    ours = penalty(lambda x, k: current_trainer().convolution(x, k, padding))(kernel, x)
    reference = penalty(lambda x, k: ops.conv(x, k, strides=1, padding=padding))(kernel, x)
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_jax_convolution_kernel_gradient_keeps_bfloat16():
    if current_backend() != "jax":
        pytest.skip("the hand-written gradient is JAX's")
    import jax
    import jax.numpy as jnp

    x, kernel = _data(8, 4, 4, 3)
    x, kernel = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)
    gradient = jax.grad(lambda k: jnp.sum(
        current_trainer().convolution(x, k, "same").astype(jnp.float32)))(kernel)
    reference = jax.grad(lambda k: jnp.sum(
        ops.conv(x, k, padding="same").astype(jnp.float32)))(kernel)
    assert gradient.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(gradient, np.float32),
                               np.asarray(reference, np.float32), rtol=2e-2, atol=0.5)


def test_strided_convolutions_bypass_the_hook():
    from keras_l2mgan.layers.common import Conv2D

    x, _ = _data(8, 3, 4, 3)
    layer = Conv2D(4, 3, strides=2, padding="same")
    out = layer(x)
    reference = ops.conv(x, layer.kernel, strides=2, padding="same") + layer.bias
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(reference),
                               rtol=1e-5, atol=1e-5)
