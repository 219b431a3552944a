"""Instance normalisation and AdaIN (Keras 3 has no InstanceNormalization layer)."""

from __future__ import annotations

import keras
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE, dense


def trainer_instance_normalize():
    """The backend trainer's ``instance_normalize(x, epsilon, scale, offset)`` hook (torch has
    a fused kernel); the layers look it up once, in build()."""
    from keras_l2mgan.trainers import current_trainer

    return current_trainer().instance_normalize


def instance_normalize_with_ops(x, epsilon: float, scale=None, offset=None):
    """Normalise each sample and channel over H and W with the biased variance, then (when
    given: both or neither) multiply by the per-channel ``scale`` and add ``offset``, in
    keras.ops (the TensorFlow and JAX hook).

    The statistics and the affine step are taken in float32 so mixed precision cannot lose them
    to bf16/fp16; the result has x's dtype.
    """
    dtype = x.dtype
    x = ops.cast(x, "float32")
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    var = ops.var(x, axis=(1, 2), keepdims=True)
    normalized = (x - mean) * ops.rsqrt(var + epsilon)
    if scale is not None:
        normalized = normalized * ops.cast(scale, "float32") + ops.cast(offset, "float32")
    return ops.cast(normalized, dtype)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class InstanceNorm(keras.layers.Layer):
    """PyTorch's InstanceNorm2d: eps 1e-5, biased variance, no running statistics."""

    def __init__(self, affine: bool = True, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.affine = affine
        self.epsilon = epsilon

    def build(self, input_shape):
        if self.affine:
            channels = input_shape[-1]
            self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self._instance_normalize = trainer_instance_normalize()
        self.built = True

    def call(self, x):
        if self.affine:  # the hook applies gamma and beta (torch: inside its fused kernel)
            return self._instance_normalize(x, self.epsilon, self.gamma, self.beta)
        return self._instance_normalize(x, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "affine": self.affine, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class AdaIN(keras.layers.Layer):
    """Adaptive instance norm: ``(1 + gamma(s)) * IN(x) + beta(s)`` with one Dense(2C) on s."""

    def __init__(self, channels: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.epsilon = epsilon
        self.fc = dense(2 * channels, name="fc")

    def build(self, x_shape, s_shape):
        self.fc.build(s_shape)
        self._instance_normalize = trainer_instance_normalize()
        self.built = True

    def call(self, x, s):
        h = self.fc(s)
        gamma = ops.expand_dims(ops.expand_dims(h[:, : self.channels], 1), 1)
        beta = ops.expand_dims(ops.expand_dims(h[:, self.channels :], 1), 1)
        return (1.0 + gamma) * self._instance_normalize(x, self.epsilon) + beta

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon}
