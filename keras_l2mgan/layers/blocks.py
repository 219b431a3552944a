"""Residual blocks of the encoders (ResBlk) and of the generator's decoder (AdainResBlk)."""

from __future__ import annotations

import math

import keras

from keras_l2mgan.layers.common import (
    SERIALIZATION_PACKAGE,
    conv,
    downsample,
    leaky_relu,
    upsample_nearest,
)
from keras_l2mgan.layers.normalization import AdaIN, InstanceNorm

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ResBlk(keras.layers.Layer):
    """Pre-activation residual block, optionally instance-normalised and 2x down-sampling.

    residual: [IN] -> lrelu -> conv3x3(c_in->c_in) -> [pool] -> [IN] -> lrelu -> conv3x3(->c_out)
    shortcut: [conv1x1 no bias, only if c_in != c_out] -> [pool]; output = sum / sqrt(2).
    """

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False,
                 downsample: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.dim_in, self.dim_out = dim_in, dim_out
        self.normalize, self.downsample = normalize, downsample
        self.learned_shortcut = dim_in != dim_out
        self.conv1 = conv(dim_in, 3, name="conv1")
        self.conv2 = conv(dim_out, 3, name="conv2")
        if normalize:
            self.norm1 = InstanceNorm(affine=True, name="norm1")
            self.norm2 = InstanceNorm(affine=True, name="norm2")
        if self.learned_shortcut:
            self.conv1x1 = conv(dim_out, 1, use_bias=False, name="conv1x1")

    def build(self, input_shape):
        shape = (None, None, None, self.dim_in)
        for layer in (self.conv1, self.conv2):
            layer.build(shape)
        if self.normalize:
            self.norm1.build(shape)
            self.norm2.build(shape)
        if self.learned_shortcut:
            self.conv1x1.build(shape)
        self.built = True

    def _shortcut(self, x):
        if self.learned_shortcut:
            x = self.conv1x1(x)
        return downsample(x) if self.downsample else x

    def _residual(self, x):
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(leaky_relu(x))
        if self.downsample:
            x = downsample(x)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(leaky_relu(x))

    def call(self, x):
        return (self._shortcut(x) + self._residual(x)) * _INV_SQRT2

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.downsample:
            h, w = (None if h is None else h // 2), (None if w is None else w // 2)
        return (n, h, w, self.dim_out)

    def get_config(self):
        return {**super().get_config(), "dim_in": self.dim_in, "dim_out": self.dim_out,
                "normalize": self.normalize, "downsample": self.downsample}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class AdainResBlk(keras.layers.Layer):
    """Decoder block modulated by the style code, optionally 2x up-sampling.

    residual: AdaIN -> lrelu -> [up] -> conv3x3(c_in->c_out) -> AdaIN -> lrelu -> conv3x3
    shortcut: [up] -> [conv1x1 no bias if c_in != c_out]
    With w_hpf == 0 the output is (residual + shortcut) / sqrt(2); with w_hpf > 0 it is the
    residual alone (the official code keeps the unused conv1x1, so checkpoints still fit).
    """

    def __init__(self, dim_in: int, dim_out: int, w_hpf: float = 0.0, upsample: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim_in, self.dim_out = dim_in, dim_out
        self.w_hpf, self.upsample = float(w_hpf), upsample
        self.learned_shortcut = dim_in != dim_out
        self.conv1 = conv(dim_out, 3, name="conv1")
        self.conv2 = conv(dim_out, 3, name="conv2")
        self.norm1 = AdaIN(dim_in, name="norm1")
        self.norm2 = AdaIN(dim_out, name="norm2")
        if self.learned_shortcut:
            self.conv1x1 = conv(dim_out, 1, use_bias=False, name="conv1x1")

    def build(self, x_shape, s_shape):
        in_shape = (None, None, None, self.dim_in)
        out_shape = (None, None, None, self.dim_out)
        self.conv1.build(in_shape)
        self.conv2.build(out_shape)
        self.norm1.build(in_shape, s_shape)
        self.norm2.build(out_shape, s_shape)
        if self.learned_shortcut:
            self.conv1x1.build(in_shape)
        self.built = True

    def _shortcut(self, x):
        if self.upsample:
            x = upsample_nearest(x)
        return self.conv1x1(x) if self.learned_shortcut else x

    def _residual(self, x, s):
        x = leaky_relu(self.norm1(x, s))
        if self.upsample:
            x = upsample_nearest(x)
        x = self.conv1(x)
        x = leaky_relu(self.norm2(x, s))
        return self.conv2(x)

    def call(self, x, s):
        out = self._residual(x, s)
        if self.w_hpf == 0:
            out = (out + self._shortcut(x)) * _INV_SQRT2
        return out

    def compute_output_shape(self, x_shape, s_shape):
        n, h, w, _ = x_shape
        if self.upsample:
            h, w = (None if h is None else h * 2), (None if w is None else w * 2)
        return (n, h, w, self.dim_out)

    def get_config(self):
        return {**super().get_config(), "dim_in": self.dim_in, "dim_out": self.dim_out,
                "w_hpf": self.w_hpf, "upsample": self.upsample}
