"""keras-l2mgan: L2M-GAN facial attribute editing in Keras 3.

Importing this package does not import keras: the CLI must be able to pick the backend first.
Networks and models are loaded on first access (``keras_l2mgan.Generator`` etc.).
"""

from __future__ import annotations

import importlib

from keras_l2mgan.config import PRESETS, L2MConfig, get_preset

__version__ = "0.1.0"

_LAZY = {
    "Generator": "keras_l2mgan.networks",
    "StyleEncoder": "keras_l2mgan.networks",
    "Discriminator": "keras_l2mgan.networks",
    "FAN": "keras_l2mgan.networks",
    "load_fan_state_dict": "keras_l2mgan.networks",
    "heatmaps_to_masks": "keras_l2mgan.masks",
    "L2MGAN": "keras_l2mgan.model",
    "edit": "keras_l2mgan.model",
    "edit_style": "keras_l2mgan.model",
}

__all__ = ["PRESETS", "L2MConfig", "__version__", "get_preset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_l2mgan' has no attribute {name!r}")
