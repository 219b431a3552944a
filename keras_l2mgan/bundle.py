"""Inference bundles: the hand-over format between training, export and editing.

A bundle is a directory holding ``config.json`` (the L2MConfig, domain names included) and
``model.weights.h5`` (L2MGAN weights; after training the generator and style encoder hold the
EMA weights). Any backend writes it and any backend reads it. A bundle made by ``l2m import``
also holds ``import.json``: where its weights came from (format, file name, sha256), and
may hold ``landmarks_mean.npy``: StarGAN v2's mean CelebA-HQ landmarks (98 x 2, at 256 px),
the target of face alignment (``load_landmarks_mean``).

A bundle is a keras-hub style preset directory: ``L2MGAN.from_preset(dir)`` loads one and
``model.save_to_preset(dir)`` writes one with ``metadata.json`` beside it (Keras and
keras_l2mgan versions, backend, date and, when known, where the weights came from). Readers
never need ``metadata.json``: bundles written before it existed load the same.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np

from keras_l2mgan.atomic import atomic_directory, write_file_atomic
from keras_l2mgan.config import L2MConfig
from keras_l2mgan.errors import CorruptFileError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
IMPORT_FILE = "import.json"
LANDMARKS_FILE = "landmarks_mean.npy"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)  # what makes a directory a bundle
BUNDLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, IMPORT_FILE, LANDMARKS_FILE, METADATA_FILE)
LANDMARKS_MEAN_SHAPE = (98, 2)  # (x, y) of FAN's 98 landmarks on a 256 px CelebA-HQ crop


def missing_bundle_file(directory: str | Path) -> str | None:
    """The first file a bundle needs that `directory` lacks; None when it is a bundle.

    The one test of "is this a bundle": load_bundle, find_bundle_dir (export, edit, eval)
    and L2MGAN.from_preset all ask it, so they never disagree on what a bundle is."""
    directory = Path(directory)
    return next((name for name in REQUIRED_FILES if not (directory / name).is_file()), None)


def is_bundle(directory: str | Path) -> bool:
    """Whether `directory` holds the files a bundle needs (see `missing_bundle_file`)."""
    return missing_bundle_file(directory) is None


def find_bundle_dir(path: str | Path) -> Path:
    """A run dir (RUN_DIR/model/) or a bundle dir itself -> the bundle dir.

    Commands take either, since a run dir is what training leaves and a bundle what import
    and export hand around."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist; pass a run dir or a bundle dir")
    for candidate in (path, path / "model"):
        if is_bundle(candidate):
            return candidate
    raise FileNotFoundError(
        f"{path} is neither a run dir nor a model bundle: expected {CONFIG_FILE} and "
        f"{WEIGHTS_FILE} in it or in {path / 'model'}"
    )


def bundle_metadata(source: str | None = None) -> dict[str, Any]:
    """What metadata.json records: enough to tell later which code wrote a bundle, and from
    what (`source`: a preset name, a bundle dir, an import; None when unknown)."""
    import keras

    from keras_l2mgan import __version__

    metadata = {
        "keras_version": keras.__version__,
        "keras_l2mgan_version": __version__,
        "backend": keras.backend.backend(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if source is not None:
        metadata["source"] = source
    return metadata


def save_bundle(model, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write model (an L2MGAN) to `directory` atomically: a temp dir, then a rename.

    With `metadata`, it is written as metadata.json in the same swap (save_to_preset)."""
    with atomic_directory(directory, "model bundle", BUNDLE_FILES) as tmp:
        model.config.save(tmp / CONFIG_FILE)
        model.save_weights(str(tmp / WEIGHTS_FILE))
        if metadata is not None:
            write_file_atomic(tmp / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    return Path(directory)


def load_metadata(directory: str | Path) -> dict[str, Any] | None:
    """A bundle's metadata.json; None when it has none (bundles older than presets). Loading a
    model never reads it: metadata is a record for people, not part of the model."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(f"{path} cannot be read ({reason})") from None
    if not isinstance(metadata, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(metadata).__name__}")
    return metadata


def load_bundle(directory: str | Path):
    """Rebuild the L2MGAN of a bundle directory and load its weights."""
    from keras_l2mgan.model import L2MGAN

    directory = Path(directory)
    missing = missing_bundle_file(directory)
    if missing is not None:
        raise FileNotFoundError(
            f"{directory} is not a model bundle: {missing} is missing "
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
