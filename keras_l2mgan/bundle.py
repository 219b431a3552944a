"""Inference bundles: the hand-over format between training, export and editing.

A bundle is a directory holding ``config.json`` (the L2MConfig, domain names included) and
``model.weights.h5`` (L2MGAN weights; after training the generator and style encoder hold the
EMA weights). Any backend writes it and any backend reads it. A bundle made by ``l2m import``
also holds ``import.json``: where its weights came from (format, file name, sha256), and
may hold ``landmarks_mean.npy``: StarGAN v2's mean CelebA-HQ landmarks (98 x 2, at 256 px),
the target of face alignment (``load_landmarks_mean``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_l2mgan.atomic import atomic_directory
from keras_l2mgan.config import L2MConfig
from keras_l2mgan.errors import CorruptFileError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
IMPORT_FILE = "import.json"
LANDMARKS_FILE = "landmarks_mean.npy"
BUNDLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, IMPORT_FILE, LANDMARKS_FILE)
LANDMARKS_MEAN_SHAPE = (98, 2)  # (x, y) of FAN's 98 landmarks on a 256 px CelebA-HQ crop


def save_bundle(model, directory: str | Path) -> Path:
    """Write model (an L2MGAN) to `directory` atomically: a temp dir, then a rename."""
    with atomic_directory(directory, "model bundle", BUNDLE_FILES) as tmp:
        model.config.save(tmp / CONFIG_FILE)
        model.save_weights(str(tmp / WEIGHTS_FILE))
    return Path(directory)


def load_bundle(directory: str | Path):
    """Rebuild the L2MGAN of a bundle directory and load its weights."""
    from keras_l2mgan.model import L2MGAN

    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory} is not a model bundle: {name} is missing "
                f"(expected {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
    model = L2MGAN(L2MConfig.load(directory / CONFIG_FILE))
    try:
        model.load_weights(str(directory / WEIGHTS_FILE))
    except Exception as error:  # noqa: BLE001 - h5py, Keras and shape errors alike
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(
            f"{directory / WEIGHTS_FILE} cannot be loaded ({reason}): it is damaged or was "
            f"written for another {CONFIG_FILE}; re-save the bundle from its run") from None
    return model


def load_landmarks_mean(directory: str | Path) -> np.ndarray | None:
    """The bundle's mean CelebA-HQ landmarks, (98, 2) float32 (x, y at 256 px); None if it has
    none. A damaged file is one CorruptFileError."""
    path = Path(directory) / LANDMARKS_FILE
    if not path.is_file():
        return None
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(f"{path} cannot be read ({reason}); re-import the bundle with "
                               "--landmarks-mean celeba_lm_mean.npz") from None
    if (not isinstance(mean, np.ndarray) or mean.shape != LANDMARKS_MEAN_SHAPE
            or not np.issubdtype(mean.dtype, np.floating) or not np.all(np.isfinite(mean))):
        found = f"{mean.dtype} {mean.shape}" if isinstance(mean, np.ndarray) else "no array"
        raise CorruptFileError(f"{path}: expected {LANDMARKS_MEAN_SHAPE} finite floats, found "
                               f"{found}; re-import the bundle with --landmarks-mean")
    return mean.astype(np.float32)
