"""Procedural faces: the numpy renderer (``render``) and the TFDS builder (``synthetic_faces``).

The renderer imports numpy and PIL only; the builder module imports tensorflow_datasets.
"""

from keras_l2mgan.data.synthetic_faces.renderer import (
    ATTRIBUTES,
    NUM_PARAMS,
    PARAM_NAMES,
    attribute_index,
    attribute_mask,
    flip,
    render,
    render_batch,
    sample_params,
)

__all__ = [
    "ATTRIBUTES",
    "NUM_PARAMS",
    "PARAM_NAMES",
    "attribute_index",
    "attribute_mask",
    "flip",
    "render",
    "render_batch",
    "sample_params",
]
