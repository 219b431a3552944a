"""The fixed high-pass filter that injects face-mask detail back into the decoder."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE

_LAPLACIAN = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype="float32")


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class HighPass(keras.layers.Layer):
    """Depthwise 3x3 Laplacian-like kernel divided by w_hpf, zero padding 1. No weights."""

    def __init__(self, w_hpf: float, **kwargs):
        super().__init__(**kwargs)
        if w_hpf <= 0:
            raise ValueError(f"HighPass needs w_hpf > 0, got {w_hpf}")
        self.w_hpf = float(w_hpf)

    def call(self, x):
        channels = x.shape[-1]
        kernel = np.tile((_LAPLACIAN / self.w_hpf)[:, :, None, None], (1, 1, channels, 1))
        kernel = ops.cast(kernel, x.dtype)
        return ops.depthwise_conv(x, kernel, strides=1, padding="same")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "w_hpf": self.w_hpf}
