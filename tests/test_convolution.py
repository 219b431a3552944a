"""The networks' convolution and instance-norm hooks (trainers/*): equal to keras.ops in value on
every backend, and on JAX (hand-written kernel gradient) and torch (channels_last without
copies) in first and second derivatives too (R1 differentiates a gradient)."""

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


def _jax_penalty_gradients(convolve, x, kernel):
    """Gradients of an R1-shaped loss (a loss of the input gradient) w.r.t. kernel and x."""
    import jax
    import jax.numpy as jnp

    def loss(kernel, x):
        input_gradient = jax.grad(lambda x: jnp.sum(jnp.sin(convolve(x, kernel))))(x)
        return jnp.sum(input_gradient ** 2) + jnp.sum(convolve(x, kernel) ** 2)

    return [np.asarray(g) for g in jax.jit(jax.grad(loss, argnums=(0, 1)))(kernel, x)]


def _torch_penalty_gradients(convolve, x, kernel):
    """The same as `_jax_penalty_gradients`, with torch's autograd."""
    import torch

    x = torch.tensor(x, requires_grad=True)
    kernel = torch.tensor(kernel, requires_grad=True)
    (input_gradient,) = torch.autograd.grad(torch.sin(convolve(x, kernel)).sum(), x,
                                            create_graph=True)
    loss = (input_gradient ** 2).sum() + (convolve(x, kernel) ** 2).sum()
    return [g.detach().numpy() for g in torch.autograd.grad(loss, (kernel, x))]


PENALTY_GRADIENTS = {"jax": _jax_penalty_gradients, "torch": _torch_penalty_gradients}


@pytest.mark.parametrize("case", CASES)
def test_convolution_gradients_equal_keras_ones(case):
    """JAX's hook has a hand-written kernel gradient, torch's runs channels_last: both must
    differentiate twice as keras.ops.conv does (TensorFlow's hook is keras.ops.conv itself)."""
    if current_backend() not in PENALTY_GRADIENTS:
        pytest.skip("TensorFlow's convolution hook is keras.ops.conv")
    penalty_gradients = PENALTY_GRADIENTS[current_backend()]
    size, channels_in, channels_out, taps, padding = case
    x, kernel = _data(size, channels_in, channels_out, taps)
    ours = penalty_gradients(lambda x, k: current_trainer().convolution(x, k, padding), x, kernel)
    reference = penalty_gradients(lambda x, k: ops.conv(x, k, strides=1, padding=padding),
                                  x, kernel)
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("case", [c for c in CASES if c[3] % 2 == 1 and c[4] == "same"])
def test_jax_bfloat16_convolution_runs_by_taps_and_differentiates_twice(case):
    """bfloat16 SAME convolutions with an odd kernel run forward and input gradient as matmuls
    per tap: no XLA convolution is left in an R1-shaped loss of a 3x3 one, and its values and
    both derivatives match float32 keras.ops.conv within bfloat16 rounding."""
    if current_backend() != "jax":
        pytest.skip("the hand-written gradients are JAX's")
    import jax
    import jax.numpy as jnp

    size, channels_in, channels_out, taps, padding = case
    x, kernel = _data(size, channels_in, channels_out, taps)
    x16, kernel16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)

    def ours(x, k):
        return current_trainer().convolution(x, k, padding).astype(jnp.float32)

    if taps > 1:
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda k, x: jnp.sum(
            jax.grad(lambda x: jnp.sum(ours(x, k)))(x) ** 2)))(kernel16, x16))
        assert "conv_general_dilated" not in jaxpr
    value = ours(x16, kernel16)
    reference = ops.conv(np.asarray(x16, np.float32), np.asarray(kernel16, np.float32),
                         padding=padding)
    np.testing.assert_allclose(np.asarray(value), ops.convert_to_numpy(reference),
                               rtol=2e-2, atol=5e-2)
    mine = _jax_penalty_gradients(ours, x16, kernel16)
    theirs = _jax_penalty_gradients(lambda x, k: ops.conv(x, k, padding=padding),
                                    np.asarray(x16, np.float32), np.asarray(kernel16, np.float32))
    for gradient, expected in zip(mine, theirs, strict=True):
        scale = np.max(np.abs(expected))
        np.testing.assert_allclose(np.asarray(gradient, np.float32) / scale, expected / scale,
                                   atol=3e-2)


def test_jax_kernel_gradient_holds_one_shifted_copy_at_a_time():
    """Compiled, not run: the temporaries of one 3x3 convolution's kernel gradient stay near a
    few copies of the input (measured 3.1x), where the nine shifted copies alive at once asked
    for 10x (and 27 GiB for the celeba_hq_256 step)."""
    if current_backend() != "jax":
        pytest.skip("the hand-written gradient is JAX's")
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((8, 64, 64, 64), jnp.float32)
    kernel = jax.ShapeDtypeStruct((3, 3, 64, 64), jnp.float32)
    kernel_gradient = jax.jit(jax.grad(
        lambda x, k: jnp.sum(current_trainer().convolution(x, k, "same") ** 2), argnums=1))
    memory = kernel_gradient.lower(x, kernel).compile().memory_analysis()
    assert memory.temp_size_in_bytes < 5 * 8 * 64 * 64 * 64 * 4


def test_strided_convolutions_bypass_the_hook():
    from keras_l2mgan.layers.common import Conv2D

    x, _ = _data(8, 3, 4, 3)
    layer = Conv2D(4, 3, strides=2, padding="same")
    out = layer(x)
    reference = ops.conv(x, layer.kernel, strides=2, padding="same") + layer.bias
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(reference),
                               rtol=1e-5, atol=1e-5)


def test_torch_hooks_return_contiguous_nhwc():
    if current_backend() != "torch":
        pytest.skip("the channels_last convolution is torch's")
    x, kernel = _data(8, 3, 4, 3)
    out = current_trainer().convolution(ops.convert_to_tensor(x), ops.convert_to_tensor(kernel),
                                        "same")
    assert tuple(out.shape) == (2, 8, 8, 4) and out.is_contiguous()
    # and so is a large instance norm's (group_norm on channels_last memory)
    normalized = current_trainer().instance_normalize(
        ops.convert_to_tensor(np.ones((2, 32, 32, 4), "float32")), 1e-5)
    assert normalized.is_contiguous()


# Small and large images: torch's hook runs instance_norm below 32x32 pixels, group_norm above.
NORM_SHAPES = [(2, 5, 6, 4), (2, 32, 33, 4)]


@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_instance_normalize_hook_equals_keras_ops(dtype, shape):
    from keras_l2mgan.layers.normalization import instance_normalize_with_ops

    rng = np.random.default_rng(3)
    x = ops.cast(rng.standard_normal(shape).astype("float32") * 3 + 1, dtype)
    ours = current_trainer().instance_normalize(x, 1e-5)
    reference = instance_normalize_with_ops(x, 1e-5)
    assert ours.dtype == reference.dtype
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(ours, "float32")),
                               ops.convert_to_numpy(ops.cast(reference, "float32")),
                               rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", NORM_SHAPES)
def test_torch_instance_normalize_gradients_equal_keras_ones(shape, affine):
    """First and second input derivatives (as under R1), and with scale and offset their
    gradients too: the affine case on group_norm's path (2x32x33x4) is the one that segfaulted
    in torch 2.13 with the weight inside group_norm."""
    if current_backend() != "torch":
        pytest.skip("the fused instance norm is torch's")
    import torch

    from keras_l2mgan.layers.normalization import instance_normalize_with_ops

    rng = np.random.default_rng(4)
    x0 = rng.standard_normal(shape).astype("float32") * 2
    weights = torch.tensor(rng.standard_normal(shape).astype("float32"))
    scale0, offset0 = rng.standard_normal((2, shape[-1])).astype("float32")

    def gradients(normalize):
        if not affine:
            return _torch_r1_gradients(lambda x: normalize(x, 1e-5), x0, weights)
        scale, offset = (torch.tensor(v, requires_grad=True) for v in (scale0, offset0))
        input_gradients = _torch_r1_gradients(lambda x: normalize(x, 1e-5, scale, offset), x0,
                                              weights)
        loss = (torch.sin(normalize(torch.tensor(x0), 1e-5, scale, offset)) * weights).sum()
        return [*input_gradients, *(g.numpy() for g in torch.autograd.grad(loss, (scale, offset)))]

    for mine, theirs in zip(gradients(current_trainer().instance_normalize),
                            gradients(instance_normalize_with_ops), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)


def _torch_r1_gradients(function, x0, weights):
    """First and second derivatives of a loss of `function(x)` w.r.t. x, as under R1."""
    import torch

    x = torch.tensor(x0, requires_grad=True)
    (first,) = torch.autograd.grad((torch.sin(function(x)) * weights).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad((first ** 2).sum(), x)
    return first.detach().numpy(), second.numpy()


def test_downsample_hook_equals_keras_average_pool():
    """Value on every backend; on torch (channels_last pooling) first and second derivatives
    too, and the output is contiguous NHWC."""
    from keras_l2mgan.layers.common import downsample_with_ops

    x = np.random.default_rng(5).standard_normal((2, 8, 6, 3)).astype("float32")
    ours = current_trainer().downsample(ops.convert_to_tensor(x))
    np.testing.assert_allclose(ops.convert_to_numpy(ours),
                               ops.convert_to_numpy(downsample_with_ops(x)), rtol=1e-6, atol=1e-6)
    if current_backend() != "torch":
        return
    import torch

    assert ours.is_contiguous()
    weights = torch.tensor(np.random.default_rng(6).standard_normal((2, 4, 3, 3)),
                           dtype=torch.float32)
    for mine, theirs in zip(_torch_r1_gradients(current_trainer().downsample, x, weights),
                            _torch_r1_gradients(downsample_with_ops, x, weights), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_convolution_with_bias_equals_keras_conv_plus_bias(case):
    """The hook adds the bias (torch inside its convolution); on torch the kernel, bias and
    input gradients of an R1-shaped loss equal those of keras.ops.conv + bias."""
    size, channels_in, channels_out, taps, padding = case
    x, kernel = _data(size, channels_in, channels_out, taps)
    bias = np.random.default_rng(7).standard_normal(channels_out).astype("float32")
    ours = current_trainer().convolution(x, ops.convert_to_tensor(kernel), padding,
                                         ops.convert_to_tensor(bias))
    reference = ops.conv(x, kernel, strides=1, padding=padding) + bias
    np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(reference),
                               rtol=1e-5, atol=1e-5)
    if current_backend() != "torch":
        return
    import torch

    def gradients(convolve):
        bias_tensor = torch.tensor(bias, requires_grad=True)
        gradients = _torch_penalty_gradients(lambda x, k: convolve(x, k, bias_tensor), x, kernel)
        loss = (convolve(torch.tensor(x), torch.tensor(kernel), bias_tensor) ** 2).sum()
        return [*gradients, torch.autograd.grad(loss, bias_tensor)[0].numpy()]

    mine = gradients(lambda x, k, b: current_trainer().convolution(x, k, padding, b))
    theirs = gradients(lambda x, k, b: ops.conv(x, k, strides=1, padding=padding) + b)
    for gradient, expected in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-4)


def test_conv_layer_adds_its_bias_through_the_hook():
    from keras_l2mgan.layers.common import conv

    x, _ = _data(8, 3, 4, 3)
    layer = conv(4, 3)
    layer.build(x.shape)
    layer.bias.assign(np.arange(4, dtype="float32"))
    out = layer(x)
    reference = ops.conv(x, layer.kernel, strides=1, padding="same") + layer.bias
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(reference),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_instance_normalize_hook_applies_scale_and_offset(dtype, shape):
    """InstanceNorm(affine=True) hands gamma and beta to the hook (torch: into its kernel)."""
    rng = np.random.default_rng(8)
    x = ops.cast(rng.standard_normal(shape).astype("float32") * 3 + 1, dtype)
    scale = rng.standard_normal(shape[-1]).astype("float32")
    offset = rng.standard_normal(shape[-1]).astype("float32")
    ours = current_trainer().instance_normalize(x, 1e-5, ops.convert_to_tensor(scale),
                                                ops.convert_to_tensor(offset))
    normalized = ops.cast(current_trainer().instance_normalize(x, 1e-5), "float32")
    assert ours.dtype == x.dtype
    tolerance = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(ours, "float32")),
                               ops.convert_to_numpy(normalized * scale + offset),
                               rtol=tolerance, atol=tolerance)


def test_upsample_hook_equals_keras_repeat():
    """Value on every backend; on torch (its nearest-neighbour kernel on channels_last memory)
    first and second derivatives too, and the output is contiguous NHWC."""
    from keras_l2mgan.layers.common import upsample_with_ops

    x = np.random.default_rng(10).standard_normal((2, 4, 3, 5)).astype("float32")
    ours = current_trainer().upsample(ops.convert_to_tensor(x))
    assert tuple(ours.shape) == (2, 8, 6, 5)
    np.testing.assert_array_equal(ops.convert_to_numpy(ours),
                                  ops.convert_to_numpy(upsample_with_ops(x)))
    if current_backend() != "torch":
        return
    import torch

    assert ours.is_contiguous()
    weights = torch.tensor(np.random.default_rng(11).standard_normal((2, 8, 6, 5)),
                           dtype=torch.float32)
    for mine, theirs in zip(_torch_r1_gradients(current_trainer().upsample, x, weights),
                            _torch_r1_gradients(upsample_with_ops, x, weights), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
