"""The building blocks against NumPy references of the official PyTorch definitions."""

import numpy as np
from keras import ops

from keras_l2mgan.layers import AdaIN, AdainResBlk, HighPass, InstanceNorm, ResBlk


def _np(x):
    return ops.convert_to_numpy(x)


def _instance_norm_reference(x, eps=1e-5):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)  # biased, as PyTorch's InstanceNorm2d
    return (x - mean) / np.sqrt(var + eps)


def test_instance_norm_matches_reference_with_eps_1e5():
    x = np.random.default_rng(0).normal(3, 0.01, (2, 5, 5, 4)).astype("float32")
    layer = InstanceNorm(affine=True)
    layer.build(x.shape)
    layer.gamma.assign(np.array([1, 2, 3, 4], "float32"))
    layer.beta.assign(np.array([0, 1, 0, -1], "float32"))
    expected = _instance_norm_reference(x) * [1, 2, 3, 4] + [0, 1, 0, -1]
    np.testing.assert_allclose(_np(layer(x)), expected, atol=2e-4)
    plain = InstanceNorm(affine=False)
    np.testing.assert_allclose(_np(plain(x)), _instance_norm_reference(x), atol=1e-4)
    assert plain.count_params() == 0


def test_adain_modulates_with_one_plus_gamma():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    s = rng.normal(size=(2, 6)).astype("float32")
    layer = AdaIN(3)
    layer.build(x.shape, s.shape)
    h = s @ _np(layer.fc.kernel) + _np(layer.fc.bias)
    gamma, beta = h[:, None, None, :3], h[:, None, None, 3:]
    expected = (1 + gamma) * _instance_norm_reference(x) + beta
    np.testing.assert_allclose(_np(layer(x, s)), expected, atol=1e-4)
    assert layer.count_params() == 6 * 6 + 6


def test_high_pass_kernel():
    x = np.zeros((1, 5, 5, 2), "float32")
    x[0, 2, 2, 0] = 1.0
    out = _np(HighPass(w_hpf=2.0)(x))
    expected = np.full((3, 3), -0.5, "float32")
    expected[1, 1] = 4.0
    np.testing.assert_allclose(out[0, 1:4, 1:4, 0], expected, atol=1e-6)
    assert np.all(out[..., 1] == 0)
    # Zero padding: a constant image is flat inside and non-zero only on the border.
    flat = _np(HighPass(w_hpf=1.0)(np.ones((1, 5, 5, 1), "float32")))[0, :, :, 0]
    assert np.allclose(flat[1:4, 1:4], 0) and flat[0, 0] == 5.0


def test_resblk_is_scaled_residual_sum():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 8, 8, 4)).astype("float32")
    block = ResBlk(4, 8, normalize=True, downsample=True)
    block.build(x.shape)
    out = _np(block(x))
    assert out.shape == (2, 4, 4, 8)
    expected = (_np(block._shortcut(x)) + _np(block._residual(x))) / np.sqrt(2)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert not hasattr(ResBlk(4, 4), "conv1x1")  # identity shortcut when widths match


def test_adain_resblk_uses_residual_alone_when_w_hpf_positive():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    s = rng.normal(size=(2, 64)).astype("float32")
    for w_hpf in (0.0, 1.0):
        block = AdainResBlk(8, 4, w_hpf=w_hpf, upsample=True)
        block.build(x.shape, s.shape)
        out, residual = _np(block(x, s)), _np(block._residual(x, s))
        assert out.shape == (2, 8, 8, 4)
        if w_hpf:
            np.testing.assert_allclose(out, residual, atol=1e-6)
        else:
            np.testing.assert_allclose(out, (residual + _np(block._shortcut(x))) / np.sqrt(2),
                                       atol=1e-5)
        assert hasattr(block, "conv1x1")  # kept even when unused, as in official checkpoints


def test_weights_use_fan_in_he_normal_and_zero_bias():
    block = ResBlk(64, 64)
    block.build((None, 8, 8, 64))
    kernel = _np(block.conv1.kernel)
    assert abs(kernel.std() - np.sqrt(2 / (9 * 64))) < 0.01 * np.sqrt(2 / (9 * 64)) * 10
    assert np.all(_np(block.conv1.bias) == 0)
