"""Input checks and per-domain selection shared by the networks."""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_l2mgan.layers.blocks import ResBlk
from keras_l2mgan.layers.common import conv, leaky_relu


def check_images(x, img_size: int, argument: str = "images") -> None:
    """Raise a ValueError unless x has the static shape (batch, img_size, img_size, 3)."""
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[1:] != (img_size, img_size, 3):
        raise ValueError(
            f"{argument} must have shape (batch, {img_size}, {img_size}, 3) for this "
            f"{img_size} px model, got {shape}; resize the images or use a model of that size"
        )


def check_labels(labels, num_domains: int, argument: str) -> None:
    """Range-check labels that are concrete values (Python ints, lists, NumPy arrays).

    Traced tensors cannot be inspected without a host sync, so they pass unchecked; every
    public entry point converts user input to NumPy first, so user errors are still caught.
    """
    if not isinstance(labels, (int, np.integer, list, tuple, np.ndarray)):
        return
    values = np.asarray(labels)
    if values.size and (not np.issubdtype(values.dtype, np.integer)
                        or values.min() < 0 or values.max() >= num_domains):
        raise ValueError(
            f"{argument} must be integer domain labels in [0, {num_domains}), "
            f"got {values.tolist()}"
        )


def select_by_label(stacked, labels, num_domains: int):
    """Pick ``stacked[i, labels[i]]`` from a (batch, num_domains, ...) tensor.

    A one-hot weighted sum instead of a gather: differentiable, and the same op on every backend.
    """
    one_hot = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), num_domains,
                          dtype=stacked.dtype)
    for _ in range(len(stacked.shape) - 2):  # expand_dims, not reshape: the batch may be None
        one_hot = ops.expand_dims(one_hot, -1)
    return ops.sum(stacked * one_hot, axis=1)


def build_trunk(config, prefix: str = "trunk"):
    """The trunk shared by the style encoder and the discriminator.

    conv3x3(3->dim_in), then ResBlk(no norm, down) to 4x4 with channels doubling up to
    max_conv_dim, then lrelu -> conv4x4 valid -> lrelu. Returns (layers, output channels).
    """
    dim_in = config.base_dim
    from_rgb = conv(dim_in, 3, name=f"{prefix}_from_rgb")
    from_rgb.build((None, None, None, 3))
    blocks = []
    for i in range(config.trunk_repeat_num):
        dim_out = min(dim_in * 2, config.max_conv_dim)
        block = ResBlk(dim_in, dim_out, downsample=True, name=f"{prefix}_block{i}")
        block.build((None, None, None, dim_in))
        blocks.append(block)
        dim_in = dim_out
    last_conv = conv(dim_in, 4, padding="valid", name=f"{prefix}_conv4x4")
    last_conv.build((None, 4, 4, dim_in))
    return from_rgb, blocks, last_conv, dim_in


def run_trunk(from_rgb, blocks, last_conv, x):
    h = from_rgb(x)
    for block in blocks:
        h = block(h)
    h = leaky_relu(last_conv(leaky_relu(h)))
    return ops.reshape(h, (-1, h.shape[-1]))
