"""Readers for the canonical on-disk formats: MNIST-style IDX (.gz or plain) and the CIFAR python pickles.

The CIFAR pickles are read with a restricted unpickler that only accepts builtins and numpy array
reconstruction: a doctored file cannot run code.
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np

# IDX type codes -> numpy dtypes (big-endian)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed): magic ``0x0000 <type> <ndim>``, big-endian sizes, data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    start = 4 + 4 * ndim
    n = int(np.prod(shape)) if shape else 1
    if len(data) - start < n * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file (shape {shape}, {len(data) - start} bytes of data)")
    return np.frombuffer(data, dtype=dtype, count=n, offset=start).reshape(shape).copy()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` (uint8) as an IDX file; gzip-compressed when `path` ends in .gz (used by tests)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file (only numpy arrays are allowed)")


def read_cifar_pickle(path: Path) -> dict:
    """One CIFAR batch file -> dict with str keys (the canonical files are Python-2 pickles, bytes keys)."""
    with open(path, "rb") as f:
        obj = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict in a CIFAR batch file, got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def cifar_arrays(batch: dict, label_key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,3,32,32], labels int64 [N]) from a decoded CIFAR batch."""
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: CIFAR batch needs keys 'data' and {label_key!r}, got {sorted(batch)}")
    x = np.asarray(batch["data"], dtype=np.uint8)
    y = np.asarray(batch[label_key], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: expected data [N, 3072] and N labels, got {x.shape} and {y.shape}")
    return x.reshape(-1, 3, 32, 32), y
