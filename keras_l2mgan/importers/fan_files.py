"""Checks of the FAN files ``l2m import`` accepts (wing.ckpt, celeba_lm_mean.npz).

The FAN network is not ported yet: the files are validated and reported, not converted.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from keras_l2mgan.errors import CorruptFileError
from keras_l2mgan.importers.checkpoint import (
    is_state_dict,
    read_torch_checkpoint,
    strip_module_prefix,
)

# The first layer of StarGAN v2's FAN (CoordConv: 3 colour + 3 coordinate channels, 7x7).
FAN_FIRST_KEY, FAN_FIRST_SHAPE = "conv1.conv.weight", (64, 6, 7, 7)


def check_wing(path: str | Path) -> str:
    """Validate StarGAN v2's wing.ckpt ({"state_dict": FAN weights}); return a report line."""
    path = Path(path)
    data = read_torch_checkpoint(path)
    state = data.get("state_dict", data) if isinstance(data, Mapping) else data
    if not is_state_dict(state):
        raise CorruptFileError(f"--wing {path}: not a FAN checkpoint (no state_dict of tensors)")
    state, _ = strip_module_prefix(state)
    first = state.get(FAN_FIRST_KEY)
    if first is None or tuple(first.shape) != FAN_FIRST_SHAPE:
        found = "missing" if first is None else str(tuple(first.shape))
        raise CorruptFileError(f"--wing {path}: not StarGAN v2's FAN weights: {FAN_FIRST_KEY} "
                               f"expected {FAN_FIRST_SHAPE}, found {found}")
    return (f"FAN weights found in {path.name} ({len(state)} tensors): not yet imported "
            "(the FAN network comes later)")


def check_landmarks_mean(path: str | Path) -> str:
    """Validate celeba_lm_mean.npz (array ``mean``: landmarks x 2); return a report line."""
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
    if (mean is None or mean.ndim != 2 or mean.shape[1] != 2
            or not np.issubdtype(mean.dtype, np.floating) or not np.all(np.isfinite(mean))):
        found = "missing" if mean is None else f"{mean.dtype} {mean.shape}"
        raise CorruptFileError(f"--landmarks-mean {path}: expected an array 'mean' of "
                               f"(landmarks, 2) finite floats, found {found}")
    return f"landmark mean found in {path.name} ({mean.shape[0]} points): not yet used"
