"""Read ``torch.save``'s zip format without torch: tensors in plain containers, nothing else.

The zip holds ``<name>/data.pkl`` (a pickle whose tensors point at storages by persistent id)
and ``<name>/data/<key>`` (each storage's raw little-endian bytes). The unpickler below
resolves only OrderedDict, the tensor rebuild functions and storage types, so a file that
asks for anything else (code) is refused, as ``torch.load(weights_only=True)`` refuses it.
Files of torch < 1.6 (not zip) need torch itself.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# Storage type -> NumPy dtype of its bytes (16-bit floats are widened to float32 on reading).
_STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsupportedPickle(pickle.UnpicklingError):
    """The file asks for a Python object this reader does not build (it might run code)."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_unused) -> np.ndarray:
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or min((*size, *stride, offset), default=0) < 0:
        raise pickle.UnpicklingError("a tensor with a negative size, stride or offset")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n > 0)
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    if last >= storage.size:
        raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride])
    return view.copy()


def _rebuild_parameter(data: np.ndarray, *_unused) -> np.ndarray:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise UnsupportedPickle(f"{module}.{name} is not a tensor or a plain container")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            array = np.frombuffer(raw, _STORAGES[kind.name])
            if array.size != numel:
                raise pickle.UnpicklingError(f"storage {key} holds {array.size} values, "
                                             f"not {numel}")
            if kind.name == "BFloat16Storage":  # bfloat16 is the top half of a float32
                array = (array.astype("<u4") << 16).view("<f4")
            elif kind.name == "HalfStorage":  # as the torch path: floats come out float32
                array = array.astype("<f4")
            self.storages[key] = array
        return self.storages[key]


def read_torch_zip(path: str | Path) -> Any:
    """The object a zip-format ``torch.save`` file holds, tensors as NumPy arrays.

    Raises UnsupportedPickle for objects other than tensors and containers, and
    ``zipfile.BadZipFile`` / ``pickle.UnpicklingError`` / ``KeyError`` for damaged files.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise zipfile.BadZipFile("no single <name>/data.pkl: not a torch.save file")
        prefix = pickles[0].split("/")[0]
        if f"{prefix}/byteorder" in archive.namelist():
            if archive.read(f"{prefix}/byteorder").strip() != b"little":
                raise pickle.UnpicklingError("a big-endian checkpoint")
        return _Unpickler(archive.read(pickles[0]), archive, prefix).load()
