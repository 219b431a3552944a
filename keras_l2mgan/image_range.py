"""The one conversion between the models' [-1, 1] floats and 0..255 pixels, and its rounding rule.

Every image the models see is ``pixels / 127.5 - 1`` and every image they return becomes pixels
as ``round((x + 1) * 127.5)`` clipped to 0..255 (round to nearest, ties to even as NumPy, TF,
JAX and torch all round). Pixels are clipped to 0..255 on the way in too: a resize with
antialiasing can overshoot, and uint8 input is unchanged by it.

Three flavours of the same two formulas, so that no caller writes them again:

- ``to_unit`` / ``to_uint8``: NumPy arrays (editors, data loaders, sample grids, tools);
- ``to_unit_tensor`` / ``to_uint8_tensor``: ``keras.ops``, for backend tensors inside models;
- ``to_unit_tf`` / ``to_uint8_tf``: TensorFlow ops, for tf.data pipelines (they are TF graphs
  whatever the Keras backend) and the exported SavedModel signatures.

``round_to_uint8`` is the rounding rule alone, for pixel-valued floats (the photo paste-back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SCALE = 127.5  # half of 255: maps 0..255 onto [-1, 1]
PIXEL_MAX = 255.0


def _unit(pixels: Any, clip: Callable) -> Any:
    return clip(pixels, 0.0, PIXEL_MAX) / SCALE - 1.0


def _scaled(images: Any) -> Any:
    return (images + 1.0) * SCALE


def round_to_uint8(values: Any) -> np.ndarray:
    """Pixel-valued floats -> uint8: round to nearest, then clip to 0..255."""
    return np.clip(np.round(values), 0.0, PIXEL_MAX).astype(np.uint8)


def to_unit(pixels: Any) -> np.ndarray:
    """uint8 (or float 0..255) pixels -> float32 in [-1, 1]."""
    return _unit(np.asarray(pixels, np.float32), np.clip)


def to_uint8(images: Any) -> np.ndarray:
    """Floats in [-1, 1] (a NumPy array) -> uint8 pixels."""
    return round_to_uint8(_scaled(np.asarray(images)))


def to_unit_tensor(pixels: Any) -> Any:
    """keras.ops version of `to_unit`: a float32 backend tensor in [-1, 1]."""
    from keras import ops

    return _unit(ops.cast(pixels, "float32"), ops.clip)


def to_uint8_tensor(images: Any) -> Any:
    """keras.ops version of `to_uint8`: a uint8 backend tensor."""
    from keras import ops

    return ops.cast(ops.clip(ops.round(_scaled(images)), 0.0, PIXEL_MAX), "uint8")


def to_unit_tf(pixels: Any) -> Any:
    """TensorFlow version of `to_unit` (tf.data pipelines, SavedModel signatures)."""
    import tensorflow as tf

    return _unit(tf.cast(pixels, tf.float32), tf.clip_by_value)


def to_uint8_tf(images: Any) -> Any:
    """TensorFlow version of `to_uint8` (SavedModel signatures)."""
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(_scaled(images)), 0.0, PIXEL_MAX), tf.uint8)
