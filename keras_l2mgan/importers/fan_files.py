"""The FAN files ``l2m import`` reads besides the checkpoint: StarGAN v2's ``wing.ckpt`` (the
98-landmark FAN) and ``celeba_lm_mean.npz`` (the mean CelebA-HQ landmarks, for alignment).

Both are checked here and returned as plain arrays; official.py loads the FAN weights.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from keras_l2mgan.bundle import LANDMARKS_MEAN_SHAPE
from keras_l2mgan.errors import CorruptFileError
from keras_l2mgan.importers.checkpoint import (
    is_state_dict,
    read_torch_checkpoint,
    strip_module_prefix,
)

# The first layer of StarGAN v2's FAN (CoordConv: 3 colour + 3 coordinate channels, 7x7).
FAN_FIRST_KEY, FAN_FIRST_SHAPE = "conv1.conv.weight", (64, 6, 7, 7)


def fan_state_dict(value: Any, origin: str) -> dict[str, np.ndarray]:
    """The FAN state dict in `value` (``module.`` prefixes removed), checked to be StarGAN v2's
    FAN by its first layer; `origin` names the input in the one-line error."""
    if not is_state_dict(value):
        raise CorruptFileError(f"{origin}: not a FAN checkpoint (no state_dict of tensors)")
    state, _ = strip_module_prefix(value)
    first = state.get(FAN_FIRST_KEY)
    if first is None or tuple(first.shape) != FAN_FIRST_SHAPE:
        found = "missing" if first is None else str(tuple(first.shape))
        raise CorruptFileError(f"{origin}: not StarGAN v2's FAN weights: {FAN_FIRST_KEY} "
                               f"expected {FAN_FIRST_SHAPE}, found {found}")
    return state


def read_wing(path: str | Path) -> dict[str, np.ndarray]:
    """The FAN state dict of StarGAN v2's wing.ckpt ({"state_dict": FAN weights})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--wing {path}: no such file")
    try:
        data = read_torch_checkpoint(path)
    except CorruptFileError as error:
        raise CorruptFileError(f"--wing {error}") from None
    state = data.get("state_dict", data) if isinstance(data, Mapping) else data
    return fan_state_dict(state, f"--wing {path}")


def read_landmarks_mean(path: str | Path) -> np.ndarray:
    """The (98, 2) float32 array ``mean`` of celeba_lm_mean.npz (x, y at 256 px)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--landmarks-mean {path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with archive:
            mean = archive["mean"] if "mean" in archive.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise CorruptFileError(f"--landmarks-mean {path} is not a readable .npz file "
                               f"({reason})") from None
    if (mean is None or mean.shape != LANDMARKS_MEAN_SHAPE
            or not np.issubdtype(mean.dtype, np.floating) or not np.all(np.isfinite(mean))):
        found = "missing" if mean is None else f"{mean.dtype} {mean.shape}"
        raise CorruptFileError(f"--landmarks-mean {path}: expected an array 'mean' of "
                               f"{LANDMARKS_MEAN_SHAPE} finite floats, found {found}")
    return mean.astype(np.float32)
