"""Datasets: synthetic faces (the offline default), CelebA, CelebA-HQ, folders; one pipeline.

Importing this package registers the TFDS builder `synthetic_faces` (tensorflow_datasets is
imported, TensorFlow and Keras are not). The pipeline (``build_dataset``) loads TensorFlow on
first use, so pick the Keras backend before calling it.
"""

from __future__ import annotations

import importlib

from keras_l2mgan.data.synthetic_faces import builder as _builder  # noqa: F401  (registers)
from keras_l2mgan.data.synthetic_faces.builder import SyntheticFaces, synthetic_config

_LAZY = {
    "build_dataset": "keras_l2mgan.data.pipeline",
    "DatasetInfo": "keras_l2mgan.data.pipeline",
    "to_numpy_iterator": "keras_l2mgan.data.pipeline",
    "parse_attrs": "keras_l2mgan.data.domains",
    "domain_names": "keras_l2mgan.data.domains",
}

__all__ = ["SyntheticFaces", "synthetic_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_l2mgan.data' has no attribute {name!r}")
