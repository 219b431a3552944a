"""Shapes through every block, edit semantics, label selection and argument checks."""

import numpy as np
import pytest
from keras import ops

from keras_l2mgan.config import L2MConfig
from keras_l2mgan.model import L2MGAN, edit_style
from keras_l2mgan.networks import Discriminator, Generator, StyleEncoder

SMALL = {"dim_in": 8, "max_conv_dim": 32}


def _images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def _np(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize("w_hpf", [0.0, 1.0])
def test_generator_shapes_through_every_block(size, w_hpf):
    gen = Generator(img_size=size, w_hpf=w_hpf, **SMALL)
    config = L2MConfig(img_size=size, w_hpf=w_hpf, **SMALL)
    x, s = _images(2, size), np.zeros((2, 64), "float32")
    h = gen.from_rgb(x)
    assert tuple(h.shape) == (2, size, size, 8)
    expected, width = [], 8
    for _ in range(config.generator_repeat_num):
        width, size_now = min(width * 2, 32), (expected[-1][1] if expected else size) // 2
        expected.append((width, size_now))
    expected += [expected[-1]] * 2
    for block, (width, spatial) in zip(gen.encode, expected, strict=True):
        h = block(h)
        assert tuple(h.shape) == (2, spatial, spatial, width)
    # The decoder mirrors the encoder: outputs retrace the encoder inputs in reverse.
    mirror = [(8, size)] + expected[:-1]
    for block, (width, spatial) in zip(gen.decode, reversed(mirror), strict=True):
        h = block(h, s)
        assert tuple(h.shape) == (2, spatial, spatial, width)
    assert tuple(gen(x, s).shape) == (2, size, size, 3)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_trunk_shapes_through_every_block(size):
    enc = StyleEncoder(img_size=size, num_domains=3, **SMALL)
    disc = Discriminator(img_size=size, num_domains=3, **SMALL)
    x = _images(2, size)
    for net in (enc, disc):
        h = net.from_rgb(x)
        spatial, width = size, 8
        for block in net.blocks:
            h = block(h)
            spatial, width = spatial // 2, min(width * 2, 32)
            assert tuple(h.shape) == (2, spatial, spatial, width)
        assert spatial == 4
        assert tuple(net.last_conv(h).shape) == (2, 1, 1, 32)
    labels = np.array([0, 2], "int32")
    assert [tuple(t.shape) for t in enc(x, labels, labels)] == [(2, 64)] * 4
    assert tuple(disc(x, labels).shape) == (2,)
    assert tuple(disc.domain_logits(x).shape) == (2, 3)


@pytest.fixture(scope="module")
def tiny_model():
    return L2MGAN(L2MConfig(img_size=32, num_domains=3, w_hpf=0.0, dim_in=8, max_conv_dim=16))


def test_style_code_splits_exactly(tiny_model):
    x = _images(4, 32)
    s, s_un, s_re, _ = tiny_model.style_encoder(x, np.array([0, 1, 2, 0]), np.array([1, 2, 0, 0]))
    np.testing.assert_allclose(_np(s_un) + _np(s_re), _np(s), atol=1e-6)


def test_alpha_zero_reconstructs_and_alpha_one_is_full_edit(tiny_model):
    x, src, tgt = _images(3, 32), np.array([0, 1, 2]), np.array([2, 0, 1])
    s, s_un, _, s_tilde_re = tiny_model.style_encoder(x, src, tgt)
    reconstruction = _np(tiny_model.generator(x, s))
    np.testing.assert_allclose(_np(tiny_model.edit(x, src, tgt, alpha=0.0)), reconstruction,
                               atol=1e-5)
    np.testing.assert_allclose(_np(edit_style(tiny_model.style_encoder, x, src, tgt, 1.0)),
                               _np(s_un) + _np(s_tilde_re), atol=1e-5)
    # Per-sample alpha: each row follows its own strength; alpha > 1 extrapolates.
    per_sample = _np(edit_style(tiny_model.style_encoder, x, src, tgt, np.array([0.0, 1.0, 1.5])))
    for i, alpha in enumerate([0.0, 1.0, 1.5]):
        single = _np(edit_style(tiny_model.style_encoder, x[i:i + 1], src[i:i + 1],
                                tgt[i:i + 1], alpha))
        np.testing.assert_allclose(per_sample[i:i + 1], single, atol=1e-5)


def test_labels_select_heads_and_branches(tiny_model):
    enc, disc = tiny_model.style_encoder, tiny_model.discriminator
    x = _images(2, 32)
    a, b = np.array([0, 2]), np.array([2, 0])
    s_a = _np(enc.encode(x, a))
    s_b = _np(enc.encode(x, b))
    swapped = _np(enc.encode(x[::-1], a))  # image order reversed, labels kept
    assert not np.allclose(s_a, s_b)
    np.testing.assert_allclose(swapped, s_b[::-1], atol=1e-5)
    # Each head is the matching Dense of the trunk features.
    features = _np(enc.blocks[0](enc.from_rgb(x)))
    assert features.shape[0] == 2
    s_re = _np(enc.decompose(enc.encode(x, a))[1])
    t_ab = _np(enc.transform(s_re, np.array([1, 2])))
    for i, label in enumerate([1, 2]):
        np.testing.assert_allclose(t_ab[i], _np(enc.transformers[label](s_re[i:i + 1]))[0],
                                   atol=1e-5)
    logits = _np(disc.domain_logits(x))
    np.testing.assert_allclose(_np(disc(x, a)), logits[[0, 1], a], atol=1e-6)


def test_call_with_image_alone_reconstructs_in_domain_zero(tiny_model):
    x = _images(2, 32)
    out = _np(tiny_model(x))
    s = tiny_model.style_encoder.encode(x, np.zeros(2, "int32"))
    np.testing.assert_allclose(out, _np(tiny_model.generator(x, s)), atol=1e-5)


def test_masks_inject_high_pass_detail_only_when_w_hpf_positive():
    size = 64
    x, s = _images(2, size), np.random.default_rng(1).normal(size=(2, 64)).astype("float32")
    masks = (np.ones((2, size, size, 1), "float32"), np.ones((2, size, size, 1), "float32"))
    gen = Generator(img_size=size, w_hpf=1.0, **SMALL)
    assert not np.allclose(_np(gen(x, s, masks)), _np(gen(x, s)))
    plain = Generator(img_size=size, w_hpf=0.0, **SMALL)
    np.testing.assert_allclose(_np(plain(x, s, masks)), _np(plain(x, s)), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (2, 32, 32, 1), (2, 32, 32, 4), (32, 32, 3)])
def test_wrong_image_shape_is_refused(tiny_model, shape):
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 32, 32, 3\)"):
        tiny_model.edit(np.zeros(shape, "float32"), 0, 1)


@pytest.mark.parametrize("label", [3, -1, [0, 5]])
def test_label_out_of_range_is_refused(tiny_model, label):
    message = r"(source|target) must be integer domain labels in \[0, 3\)"
    with pytest.raises(ValueError, match=message):
        tiny_model.edit(_images(2, 32), label, 0)
    with pytest.raises(ValueError, match=r"labels must be integer domain labels in \[0, 3\)"):
        tiny_model.discriminator(_images(2, 32), np.resize(np.array(label), 2))


def test_bad_network_size_is_refused():
    with pytest.raises(ValueError, match="img_size must be a power of two from 32 to 1024"):
        Generator(img_size=48)
    with pytest.raises(ValueError, match="img_size must be a power of two from 32 to 1024"):
        Discriminator(img_size=16)
