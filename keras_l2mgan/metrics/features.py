"""Feature extractors for FID/KID: the ImageNet InceptionV3 when its weights are on this
machine, else the attribute classifier's penultimate layer (named as such in every report).

Nothing is downloaded: InceptionV3 weights come from --inception-weights or the Keras cache
(~/.keras/models/, or $KERAS_HOME/models/), where `keras.applications` keeps them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_l2mgan.image_range import to_unit_tensor

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299
FEATURE_KINDS = ("auto", "inception", "classifier")


def cached_inception_weights() -> Path | None:
    """The no-top InceptionV3 weights in the Keras cache, if present."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    path = home / "models" / INCEPTION_FILE
    return path if path.is_file() else None


class InceptionFeatures:
    """2048-d pool features of the ImageNet InceptionV3 (Keras weights), images resized to 299."""

    name = "InceptionV3 (ImageNet) pool features"
    label = "FID"

    def __init__(self, weights: str | Path):
        import keras

        self.model = keras.applications.InceptionV3(
            include_top=False, weights=str(weights), pooling="avg",
            input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))

    def __call__(self, images, batch_size: int = 32) -> np.ndarray:
        from keras import ops

        out = []
        for i in range(0, len(images), batch_size):
            x = ops.convert_to_tensor(np.asarray(images[i:i + batch_size], np.float32))
            x = ops.image.resize(x, (INCEPTION_SIZE, INCEPTION_SIZE), interpolation="bilinear")
            out.append(ops.convert_to_numpy(self.model(to_unit_tensor(x), training=False)))
        return np.concatenate(out).astype(np.float64)


class ClassifierFeatures:
    """The attribute classifier's 128-d penultimate features, scaled to unit RMS on real test
    faces (not comparable with published FIDs, which use InceptionV3)."""

    name = "attribute classifier penultimate features (unit RMS on real faces)"
    label = "FID (classifier features)"

    def __init__(self, classifier):
        self.classifier = classifier
        self.scale = float(getattr(classifier, "info", {}).get("feature_scale", 1.0))

    def __call__(self, images, batch_size: int = 256) -> np.ndarray:
        return self.classifier.features(images, batch_size) * self.scale


def feature_extractor(kind: str = "auto", inception_weights: str | Path | None = None,
                      classifier=None):
    """InceptionV3 if asked for or (auto) if its weights are found; else classifier features."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"--features must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    weights = None
    if inception_weights is not None:
        weights = Path(inception_weights).expanduser()
        if not weights.is_file():
            raise FileNotFoundError(f"--inception-weights {weights} does not exist (expected "
                                    f"Keras's {INCEPTION_FILE})")
    elif kind != "classifier":
        weights = cached_inception_weights()
    if kind == "inception" and weights is None:
        raise FileNotFoundError(
            f"no InceptionV3 weights: pass --inception-weights PATH or put {INCEPTION_FILE} "
            "in ~/.keras/models/ (nothing is downloaded)")
    if weights is not None and kind != "classifier":
        return InceptionFeatures(weights)
    if classifier is None:
        raise ValueError("FID/KID need InceptionV3 weights (--inception-weights PATH) or an "
                         "attribute classifier (--classifier DIR) for features")
    return ClassifierFeatures(classifier)
