"""The StarGAN v2 / L2M-GAN generator: an IN-normalised encoder and an AdaIN decoder."""

from __future__ import annotations

import keras
from keras import ops

from keras_l2mgan.layers import AdainResBlk, HighPass, InstanceNorm, ResBlk
from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE, conv, leaky_relu
from keras_l2mgan.networks.common import check_images

# Resolutions at which encoder features are re-injected through the high-pass filter.
_MASK_SIZES = (32, 64, 128)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Generator(keras.Model):
    """x (N, S, S, 3), style s (N, style_dim), optional masks -> image (N, S, S, 3), unbounded.

    ``masks`` is a pair (coarse, fine) of (N, h, w, 1) face masks; the coarse one is used at
    32 px, the fine one at 64 and 128 px. It only has an effect when w_hpf > 0.
    """

    def __init__(self, img_size: int = 256, style_dim: int = 64, w_hpf: float = 1.0,
                 dim_in: int | None = None, max_conv_dim: int = 512, **kwargs):
        super().__init__(**kwargs)
        from keras_l2mgan.config import L2MConfig  # validates the arguments

        self.config = L2MConfig(img_size=img_size, style_dim=style_dim, w_hpf=w_hpf,
                                dim_in=dim_in, max_conv_dim=max_conv_dim)
        self.img_size, self.style_dim, self.w_hpf = img_size, style_dim, float(w_hpf)
        self.dim_in, self.max_conv_dim = dim_in, max_conv_dim

        width = self.config.base_dim
        self.from_rgb = conv(width, 3, name="from_rgb")
        self.encode = []
        decoder_specs = []  # (dim_in, dim_out, upsample) in encoder order, reversed below
        # (channels, size) of each encoder block's input, mirrored by the decoder's outputs.
        self._encoder_inputs = []
        size = img_size
        for i in range(self.config.generator_repeat_num):
            width_out = min(width * 2, max_conv_dim)
            self.encode.append(ResBlk(width, width_out, normalize=True, downsample=True,
                                      name=f"encode{i}"))
            decoder_specs.append((width_out, width, True))
            self._encoder_inputs.append((width, size))
            width, size = width_out, size // 2
        for _ in range(2):  # bottleneck blocks
            self.encode.append(ResBlk(width, width, normalize=True,
                                      name=f"encode{len(self.encode)}"))
            decoder_specs.append((width, width, False))
            self._encoder_inputs.append((width, size))
        # The decoder mirrors the encoder; blocks are numbered in execution order, as the
        # official decode.0, decode.1, ...
        self.decode = [
            AdainResBlk(d_in, d_out, w_hpf=w_hpf, upsample=up, name=f"decode{i}")
            for i, (d_in, d_out, up) in enumerate(reversed(decoder_specs))
        ]
        self.to_rgb_norm = InstanceNorm(affine=True, name="to_rgb_norm")
        self.to_rgb_conv = conv(3, 1, name="to_rgb_conv")
        self.hpf = HighPass(w_hpf, name="hpf") if w_hpf > 0 else None
        self.build()

    def build(self, input_shape=None):
        base = self.config.base_dim
        self.from_rgb.build((None, None, None, 3))
        for block, (width, _) in zip(self.encode, self._encoder_inputs, strict=True):
            block.build((None, None, None, width))
        for block in self.decode:
            block.build((None, None, None, block.dim_in), (None, self.style_dim))
        self.to_rgb_norm.build((None, None, None, base))
        self.to_rgb_conv.build((None, None, None, base))
        self.built = True

    def call(self, x, s, masks=None):
        check_images(x, self.img_size, "x")
        use_masks = masks is not None and self.hpf is not None
        cache = {}
        h = self.from_rgb(x)
        for block in self.encode:
            size = h.shape[1]
            if use_masks and size in _MASK_SIZES:
                cache[size] = h
            h = block(h)
        for block in self.decode:
            h = block(h, s)
            size = h.shape[1]
            if use_masks and size in _MASK_SIZES:
                mask = masks[0] if size == 32 else masks[1]
                mask = ops.image.resize(ops.cast(mask, h.dtype), (size, size),
                                        interpolation="bilinear")
                h = h + self.hpf(mask * cache[size])
        return self.to_rgb_conv(leaky_relu(self.to_rgb_norm(h)))

    def get_config(self):
        return {**super().get_config(), "img_size": self.img_size, "style_dim": self.style_dim,
                "w_hpf": self.w_hpf, "dim_in": self.dim_in, "max_conv_dim": self.max_conv_dim}
