"""Backend choice: `reference`, `cpu`, `triton`, `cuda`.

Default: `cpu` for CPU tensors and `cuda` for CUDA tensors. `use_backend(name)` sets the backend
(and restores the previous one when used as a context manager); the environment variable
`FASTNOISE_BACKEND` sets it at import. Asking for a backend that is not usable on a tensor's device
raises `BackendUnavailableError` saying why and how to get it: nothing falls back silently.

The backend is resolved when an op is called (under `torch.compile`: when it is traced) and passed
to the `torch.library` op as an explicit string argument, so compiled graphs and `opcheck` see it.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional, Union

import torch

from . import _ext

BACKENDS = ("reference", "cpu", "triton", "cuda")
#: the device types each backend runs on (triton on CPU tensors only under TRITON_INTERPRET=1)
DEVICES = {"reference": ("cpu", "cuda"), "cpu": ("cpu",), "triton": ("cpu", "cuda"), "cuda": ("cuda",)}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine or on this device."""


def _validate(name: Optional[str]) -> Optional[str]:
    if name is None or name == "":
        return None
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or None for the default), got {name!r}")
    return name


_current: Optional[str] = _validate(os.environ.get("FASTNOISE_BACKEND"))


class use_backend:
    """Select the backend for all fastnoise ops.

    Works as a setter, ``fastnoise.use_backend("triton")``, and as a context manager,
    ``with fastnoise.use_backend("reference"): ...`` (restores the previous choice on exit).
    ``None`` restores the per-device default.
    """

    def __init__(self, name: Optional[str]) -> None:
        global _current
        self._previous = _current
        _current = _validate(name)

    def __enter__(self) -> "use_backend":
        return self

    def __exit__(self, *exc) -> None:
        global _current
        _current = self._previous


def current_backend() -> Optional[str]:
    """The backend set by `use_backend` / FASTNOISE_BACKEND, or None for the per-device default."""
    return _current


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _why_unusable(name: str, device_type: str) -> Optional[str]:
    """None when `name` can run on `device_type`, else the reason and the remedy."""
    if device_type not in ("cpu", "cuda"):
        return f"fastnoise supports CPU and CUDA tensors, got a tensor on {device_type!r}"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available in this torch build or on this machine"
    if name == "reference":
        return None
    if name == "cpu":
        if device_type != "cpu":
            return "the `cpu` backend runs on CPU tensors only; use `cuda` or `triton` for CUDA tensors"
        if not _ext.cpu_extension():
            return f"the C++ extension fastnoise._C is not loaded ({_ext.load_error('_C')}); {_ext.REBUILD_HINT}"
        return None
    if name == "cuda":
        if device_type != "cuda":
            return "the `cuda` backend runs on CUDA tensors only; use `cpu` for CPU tensors"
        if not _ext.cuda_extension():
            err = _ext.load_error("_C_cuda") or _ext.load_error("_C")
            return (f"the CUDA extension fastnoise._C_cuda is not loaded ({err}); build on a machine with a "
                    "CUDA build of torch and nvcc, with FASTNOISE_CUDA=1 to force it")
        return None
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed: `pip install 'triton>=3.6'`"
        if device_type == "cpu" and not triton_interpret():
            return ("Triton kernels run on CPU tensors only in the interpreter: set TRITON_INTERPRET=1 "
                    "before importing fastnoise")
        return None
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def is_usable(name: str, device: Union[str, torch.device]) -> bool:
    return _why_unusable(_validate(name), torch.device(device).type) is None


def available_backends(device: Union[str, torch.device, None] = None) -> list[str]:
    """Backends usable on `device` (None: on any device of this machine), in BACKENDS order."""
    if device is not None:
        types = [torch.device(device).type]
    else:
        types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [b for b in BACKENDS if any(_why_unusable(b, t) is None for t in types)]


def resolve(device: Union[str, torch.device], backend: Optional[str] = None) -> str:
    """The backend an op runs with on `device`: `backend`, else the selected one, else the default."""
    device_type = torch.device(device).type
    name = _validate(backend) or _current or ("cuda" if device_type == "cuda" else "cpu")
    why = _why_unusable(name, device_type)
    if why is not None:
        raise BackendUnavailableError(f"fastnoise backend {name!r} is unusable on {device_type}: {why}")
    return name
