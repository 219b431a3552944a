"""Datasets: synthetic faces (the offline default), CelebA, CelebA-HQ, folders; one pipeline.

Importing this package imports nothing heavy: the synthetic-faces renderer needs numpy and
PIL only, so it also runs where TensorFlow is not installed (the GPU training script). The TFDS
builder `synthetic_faces` registers itself when first named here (``SyntheticFaces``,
``synthetic_config``) or when the pipeline (``build_dataset``) loads; the pipeline loads
TensorFlow, so pick the Keras backend before calling it.
"""

from __future__ import annotations

import importlib
import os

_LAZY = {
    "SyntheticFaces": "keras_l2mgan.data.synthetic_faces.builder",
    "synthetic_config": "keras_l2mgan.data.synthetic_faces.builder",
    "build_dataset": "keras_l2mgan.data.pipeline",
    "DatasetInfo": "keras_l2mgan.data.pipeline",
    "to_numpy_iterator": "keras_l2mgan.data.pipeline",
    "parse_attrs": "keras_l2mgan.data.domains",
    "domain_names": "keras_l2mgan.data.domains",
}

__all__ = [*_LAZY, "default_data_dir"]


def default_data_dir() -> str:
    """$L2M_DATA_DIR, else TFDS's usual ~/tensorflow_datasets."""
    return os.environ.get("L2M_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_l2mgan.data' has no attribute {name!r}")
