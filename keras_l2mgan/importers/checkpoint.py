"""Read a ``torch.save`` file as plain data (NumPy arrays in dicts) without running its code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from keras_l2mgan.errors import CorruptFileError

FORMATS = ("auto", "l2mgan", "stargan-v2")
TORCH_EXTRA = "pip install 'keras-l2mgan[torch]'"
# Deep enough for {network: {key: tensor}} and a wrapped {"state_dict": ...}; a deeper file is
# not a checkpoint of ours and is not walked.
_MAX_DEPTH = 4


class MissingTorchError(ValueError):
    """torch is needed to read the file and is not installed (names the extra to install)."""


def read_torch_checkpoint(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, every tensor turned into a NumPy array.

    ``torch.load(weights_only=True)`` unpickles tensors and plain containers only: a file that
    would run code is refused. Without torch, zip-format files (torch >= 1.6) go through a
    restricted reader of the same kind (torch_zip.py). Any unreadable file is one
    CorruptFileError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        import torch
    except ImportError:
        return _read_without_torch(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - zip, pickle and torch errors alike
        text = str(error)
        if "Weights only load failed" in text:
            reason = "it holds Python objects besides tensors; refusing to run code from it"
        else:
            reason = (text.splitlines()[0][:200] if text else type(error).__name__)
        raise CorruptFileError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None
    return _to_numpy(data, torch, 0)


def _read_without_torch(path: Path) -> Any:
    """The zip format through the restricted reader; anything else needs torch."""
    import pickle
    import zipfile

    from keras_l2mgan.importers.torch_zip import UnsupportedPickle, read_torch_zip

    needs_torch = f"reading {path.name} needs torch: {TORCH_EXTRA}"
    if not zipfile.is_zipfile(path):
        raise MissingTorchError(f"{needs_torch} (it is not in torch's zip format, which is "
                                "read without torch)")
    try:
        return read_torch_zip(path)
    except UnsupportedPickle as error:
        raise MissingTorchError(f"{needs_torch} ({error})") from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, EOFError,
            TypeError, IndexError, AttributeError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None


def _to_numpy(value: Any, torch, depth: int) -> Any:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()  # NumPy has no bfloat16
        return tensor.numpy()
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {key: _to_numpy(item, torch, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_numpy(item, torch, depth + 1) for item in value]
    return value


def strip_module_prefix(state: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Drop the ``module.`` prefixes nn.DataParallel adds; report whether there were any."""
    out, stripped = {}, False
    for key, value in state.items():
        name = key
        while name.startswith("module."):
            name, stripped = name[len("module."):], True
        if name in out:
            raise CorruptFileError(f"key {key!r} appears twice once 'module.' is removed")
        out[name] = value
    return out, stripped


def is_state_dict(value: Any) -> bool:
    """A non-empty {str: array} mapping, as a module's state_dict() becomes after reading."""
    return (isinstance(value, Mapping) and bool(value)
            and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items()))
