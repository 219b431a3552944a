"""Small helpers shared by the layers: the official initialisation and resampling ops."""

from __future__ import annotations

import keras
from keras import ops

LEAKY_SLOPE = 0.2
SERIALIZATION_PACKAGE = "keras_l2mgan"


def he_normal() -> keras.initializers.Initializer:
    """PyTorch's kaiming_normal_(fan_in, relu gain): an untruncated normal, std sqrt(2/fan_in)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D (stride 1, NHWC) convolving with the backend trainer's
    ``convolution`` hook: keras.ops.conv, with a faster kernel gradient on JAX and without
    layout copies on torch."""

    def build(self, input_shape):
        super().build(input_shape)
        from keras_l2mgan.trainers import current_trainer

        # Decided once: the hook covers the networks' plain convolutions only.
        plain = (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                 and self.groups == 1 and self.data_format == "channels_last"
                 and self.activation is keras.activations.linear)
        self._trainer_convolution = current_trainer().convolution if plain else None

    def call(self, inputs):
        if self._trainer_convolution is None:
            return super().call(inputs)
        # The bias goes to the hook: torch adds it inside the convolution (and sums its
        # gradient there) instead of one more pass over the output and its gradient.
        return self._trainer_convolution(inputs, self.kernel, self.padding,
                                         self.bias if self.use_bias else None)


def conv(filters: int, kernel_size: int, *, use_bias: bool = True, padding: str = "same",
         name: str | None = None) -> Conv2D:
    """A stride-1 conv with the official init; 3x3 'same' equals PyTorch's zero pad 1."""
    return Conv2D(
        filters, kernel_size, padding=padding, use_bias=use_bias,
        kernel_initializer=he_normal(), bias_initializer="zeros", name=name,
    )


def add_bias(outputs, bias):
    """outputs + bias over the last (channel) axis; outputs unchanged when bias is None."""
    return outputs if bias is None else ops.add(outputs, bias)


def dense(units: int, name: str | None = None) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, kernel_initializer=he_normal(), bias_initializer="zeros", name=name
    )


def leaky_relu(x):
    return ops.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def downsample(x):
    """2x2 average pooling (NHWC), by the backend trainer's ``downsample`` hook."""
    from keras_l2mgan.trainers import current_trainer

    return current_trainer().downsample(x)


def downsample_with_ops(x):
    """2x2 average pooling (NHWC) by keras.ops."""
    return ops.average_pool(x, pool_size=2, strides=2, padding="valid")


def upsample_nearest(x):
    """Nearest-neighbour 2x up-sampling (NHWC), by the backend trainer's ``upsample`` hook."""
    from keras_l2mgan.trainers import current_trainer

    return current_trainer().upsample(x)


def upsample_with_ops(x):
    """Nearest-neighbour 2x up-sampling (NHWC) by keras.ops."""
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
