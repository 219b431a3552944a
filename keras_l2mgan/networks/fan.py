"""FAN: StarGAN v2's 98-landmark face alignment network ("wing"), for inference only.

The official CelebA-HQ model (w_hpf > 0) feeds its generator two face masks made from FAN's
heatmaps (see keras_l2mgan.masks). This is that network in keras.ops, NHWC, with the official
state-dict names kept by ``torch_variables`` so ``load_fan_state_dict`` can copy
``wing.ckpt`` or the ``fan`` entry of ``100000_nets_ema.ckpt`` into it.

Every BatchNorm runs on its running statistics (eps 1e-5): FAN is never trained here.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE, downsample, upsample_nearest

FAN_INPUT_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 98
HOURGLASS_DEPTH = 4
_BN_EPSILON = 1e-5
# FAN always computes in float32, whatever the global policy: its heatmaps go through a 0.1
# threshold, a min-max normalisation and powers: in bfloat16 the masks of the parity test's
# FAN moved by up to 0.96 (mean 0.01).
_DTYPE = "float32"
# Official BatchNorm2d names -> Keras BatchNormalization attributes.
_BN_FIELDS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}


def _coordinates(size: int) -> np.ndarray:
    """The CoordConv channels at size x size: row and column in [-1, 1], radius / max radius."""
    line = np.arange(size, dtype=np.float32) / (size - 1) * 2 - 1
    rows, cols = np.meshgrid(line, line, indexing="ij")
    radius = np.sqrt(rows**2 + cols**2)
    return np.stack([rows, cols, radius / radius.max()], axis=-1)[None]  # (1, S, S, 3)


def _add_coordinates(x, coords: np.ndarray):
    # Broadcast against x[..., :1] rather than reshape to a batch size: it may be dynamic.
    coords = ops.zeros_like(x[..., :1]) + ops.convert_to_tensor(coords, dtype=x.dtype)
    return ops.concatenate([x, coords], axis=-1)


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, dtype=_DTYPE, name=name)


def _conv(filters: int, kernel: int, use_bias: bool, name: str, strides: int = 1,
          padding: str = "same") -> keras.layers.Conv2D:
    # Zero init: FAN is only ever used with pretrained weights, and random init of its 24M
    # parameters costs seconds (tens of seconds on JAX, one compiled kernel per shape).
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                               use_bias=use_bias, kernel_initializer="zeros", dtype=_DTYPE,
                               name=name)


def fan_input(images):
    """[-1, 1] images (N, S, S, 3) -> FAN's input: bilinear to 256 x 256, then [0, 1].

    The resize is PyTorch's F.interpolate(bilinear, align_corners=False, no antialias), which
    is what ops.image.resize computes with antialias=False.
    """
    x = ops.convert_to_tensor(images)
    if tuple(x.shape[1:3]) != (FAN_INPUT_SIZE, FAN_INPUT_SIZE):
        x = ops.image.resize(x, (FAN_INPUT_SIZE, FAN_INPUT_SIZE), interpolation="bilinear",
                             antialias=False)
    return x * 0.5 + 0.5


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FanConvBlock(keras.layers.Layer):
    """Pre-activation block: three (BN -> ReLU -> conv3x3, no bias) to c/2, c/4, c/4 channels,
    concatenated, plus the shortcut (identity, or BN -> ReLU -> conv1x1 when c_in != c_out)."""

    def __init__(self, dim_in: int, dim_out: int, **kwargs):
        kwargs["dtype"] = _DTYPE
        super().__init__(**kwargs)
        self.dim_in, self.dim_out = dim_in, dim_out
        half, quarter = dim_out // 2, dim_out // 4
        self.bn1, self.conv1 = _bn("bn1"), _conv(half, 3, False, "conv1")
        self.bn2, self.conv2 = _bn("bn2"), _conv(quarter, 3, False, "conv2")
        self.bn3, self.conv3 = _bn("bn3"), _conv(quarter, 3, False, "conv3")
        self.has_shortcut = dim_in != dim_out
        if self.has_shortcut:
            self.shortcut_bn = _bn("shortcut_bn")
            self.shortcut_conv = _conv(dim_out, 1, False, "shortcut_conv")

    def build(self, input_shape=None):
        widths = ((self.bn1, self.conv1, self.dim_in), (self.bn2, self.conv2, self.dim_out // 2),
                  (self.bn3, self.conv3, self.dim_out // 4))
        if self.has_shortcut:
            widths += ((self.shortcut_bn, self.shortcut_conv, self.dim_in),)
        for bn, conv, width in widths:
            bn.build((None, None, None, width))
            conv.build((None, None, None, width))
        self.built = True

    def call(self, x):
        out1 = self.conv1(ops.relu(self.bn1(x, training=False)))
        out2 = self.conv2(ops.relu(self.bn2(out1, training=False)))
        out3 = self.conv3(ops.relu(self.bn3(out2, training=False)))
        shortcut = x
        if self.has_shortcut:
            shortcut = self.shortcut_conv(ops.relu(self.shortcut_bn(x, training=False)))
        return ops.concatenate([out1, out2, out3], axis=-1) + shortcut

    def torch_layers(self) -> dict[str, keras.layers.Layer]:
        layers = {"bn1": self.bn1, "conv1": self.conv1, "bn2": self.bn2, "conv2": self.conv2,
                  "bn3": self.bn3, "conv3": self.conv3}
        if self.has_shortcut:  # the official nn.Sequential(BN, ReLU, conv): indices 0 and 2
            layers.update({"downsample.0": self.shortcut_bn, "downsample.2": self.shortcut_conv})
        return layers

    def get_config(self):
        return {**super().get_config(), "dim_in": self.dim_in, "dim_out": self.dim_out}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FAN(keras.Model):
    """``call(images)``: [-1, 1] images (N, S, S, 3), any S -> raw heatmaps (N, 64, 64, 98).

    The 99th (boundary) heatmap is dropped, as the official ``get_heatmap`` does.
    ``keras_l2mgan.heatmaps_to_masks`` turns the heatmaps into the generator's masks.
    Inference only (BatchNorm on running statistics), always in float32; the model is built on
    construction with zero weights, to be replaced by ``load_fan_state_dict`` or a bundle's weights.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = _DTYPE
        super().__init__(**kwargs)
        self.conv1 = _conv(64, 7, True, "conv1", strides=2, padding="valid")
        self.bn1 = _bn("bn1")
        self.conv2 = FanConvBlock(64, 128, name="conv2")
        self.conv3 = FanConvBlock(128, 128, name="conv3")
        self.conv4 = FanConvBlock(128, 256, name="conv4")
        self.hourglass_coordconv = _conv(256, 1, True, "m0_coordconv")
        # Official names m0.b1_<level>, m0.b2_<level>, m0.b3_<level> and m0.b2_plus_1.
        # Plain attributes, not a dict, so each block is tracked (and saved) exactly once.
        self._hourglass_keys = tuple(
            f"{branch}_{level}" for level in range(HOURGLASS_DEPTH, 0, -1)
            for branch in ("b1", "b2", "b3") + (("b2_plus",) if level == 1 else ()))
        for key in self._hourglass_keys:
            setattr(self, f"m0_{key}", FanConvBlock(256, 256, name=f"m0_{key}"))
        self.top_m_0 = FanConvBlock(256, 256, name="top_m_0")
        self.conv_last0 = _conv(256, 1, True, "conv_last0")
        self.bn_end0 = _bn("bn_end0")
        self.l0 = _conv(NUM_LANDMARKS + 1, 1, True, "l0")
        self._coords_input = _coordinates(FAN_INPUT_SIZE)
        self._coords_hourglass = _coordinates(HEATMAP_SIZE)
        self.build()

    def _block(self, key: str) -> FanConvBlock:
        return getattr(self, f"m0_{key}")

    def build(self, input_shape=None):
        self.conv1.build((None, None, None, 6))
        self.bn1.build((None, None, None, 64))
        for block in (self.conv2, self.conv3, self.conv4, self.top_m_0,
                      *map(self._block, self._hourglass_keys)):
            block.build()
        self.hourglass_coordconv.build((None, None, None, 259))
        self.conv_last0.build((None, None, None, 256))
        self.bn_end0.build((None, None, None, 256))
        self.l0.build((None, None, None, 256))
        self.built = True

    def _hourglass(self, level: int, x):
        upper = self._block(f"b1_{level}")(x)
        lower = self._block(f"b2_{level}")(downsample(x))
        if level > 1:
            lower = self._hourglass(level - 1, lower)
        else:
            lower = self._block("b2_plus_1")(lower)
        lower = self._block(f"b3_{level}")(lower)
        return upper + upsample_nearest(lower)

    def all_heatmaps(self, x01):
        """FAN's 99 raw heatmaps (N, 64, 64, 99) of its [0, 1] 256 x 256 input."""
        x = _add_coordinates(x01, self._coords_input)
        # PyTorch's padding 3 on both sides; Keras 'same' at stride 2 would pad 2 and 3.
        x = self.conv1(ops.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0))))
        x = ops.relu(self.bn1(x, training=False))
        x = downsample(self.conv2(x))
        x = self.conv4(self.conv3(x))
        x = self.hourglass_coordconv(_add_coordinates(x, self._coords_hourglass))
        x = self.top_m_0(self._hourglass(HOURGLASS_DEPTH, x))
        x = ops.relu(self.bn_end0(self.conv_last0(x), training=False))
        return self.l0(x)

    def call(self, images):
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"FAN takes images of shape (batch, height, width, 3), got {shape}")
        return self.all_heatmaps(fan_input(ops.cast(images, _DTYPE)))[..., :NUM_LANDMARKS]

    def torch_layers(self) -> dict[str, keras.layers.Layer]:
        """Official module names (no ``fan.`` prefix) -> the Keras layer holding its weights."""
        layers = {"conv1.conv": self.conv1, "bn1": self.bn1,
                  "m0.coordconv.conv": self.hourglass_coordconv,
                  "conv_last0": self.conv_last0, "bn_end0": self.bn_end0, "l0": self.l0}
        blocks = {"conv2": self.conv2, "conv3": self.conv3, "conv4": self.conv4,
                  "top_m_0": self.top_m_0,
                  **{f"m0.{key}": self._block(key) for key in self._hourglass_keys}}
        for prefix, block in blocks.items():
            for name, layer in block.torch_layers().items():
                layers[f"{prefix}.{name}"] = layer
        return layers

    def torch_variables(self) -> dict[str, tuple[keras.Variable, bool]]:
        """Official state-dict names -> (variable, is a conv kernel stored OIHW)."""
        variables = {}
        for prefix, layer in self.torch_layers().items():
            if isinstance(layer, keras.layers.BatchNormalization):
                for torch_name, attribute in _BN_FIELDS.items():
                    variables[f"{prefix}.{torch_name}"] = (getattr(layer, attribute), False)
            else:
                variables[f"{prefix}.weight"] = (layer.kernel, True)
                if layer.use_bias:
                    variables[f"{prefix}.bias"] = (layer.bias, False)
        return variables


def load_fan_state_dict(fan: FAN, state_dict: Mapping[str, np.ndarray]) -> list[str]:
    """Copy official FAN weights into `fan`; return the state-dict keys used, in order.

    `state_dict` maps the official names without the ``fan.`` prefix (wing.ckpt's
    ``state_dict`` or the ``fan`` entry of L2M-GAN's checkpoint) to arrays; conv weights are
    OIHW and transposed to HWIO. Keys FAN does not use (``num_batches_tracked``, modules of
    larger FANs) are ignored. Every tensor is checked before any is assigned: a missing key or
    a shape mismatch is one ValueError naming the key, the expected and the found shape.
    """
    arrays = []
    for key, (variable, is_kernel) in fan.torch_variables().items():
        if key not in state_dict:
            raise ValueError(f"FAN weights: {key} is missing (expected shape "
                             f"{_torch_shape(variable, is_kernel)})")
        value = np.asarray(state_dict[key], dtype=np.float32)
        expected = _torch_shape(variable, is_kernel)
        if value.shape != expected:
            raise ValueError(f"FAN weights: {key} has shape {value.shape}, expected {expected}")
        arrays.append((key, variable, value.transpose(2, 3, 1, 0) if is_kernel else value))
    for _, variable, value in arrays:
        variable.assign(value)
    return [key for key, _, _ in arrays]


def _torch_shape(variable, is_kernel: bool) -> tuple[int, ...]:
    shape = tuple(variable.shape)
    return (shape[3], shape[2], shape[0], shape[1]) if is_kernel else shape
