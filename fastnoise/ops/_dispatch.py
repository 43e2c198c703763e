"""One table from (op family, kernel name, backend) to the function that runs it.

Convention (adding a backend means following it, not writing new glue):
  reference -> fastnoise.reference.<family>.<name>          (eager PyTorch, any device)
  cpu, cuda -> torch.ops.fastnoise_kernels.<name>            (C++ / CUDA, picked by the device key)
  triton    -> fastnoise.triton_kernels.<family>.<name>      (imported on first use)
All four take the same arguments and return the same outputs as the kernel schema in
csrc/register.cpp.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

from .. import _ext
from .._backend import BackendUnavailableError

_cache: dict[tuple[str, str, str], Callable] = {}


def kernel(family: str, name: str, backend: str) -> Callable:
    key = (family, name, backend)
    fn = _cache.get(key)
    if fn is not None:
        return fn
    if backend == "reference":
        fn = getattr(importlib.import_module(f"fastnoise.reference.{family}"), name)
    elif backend in ("cpu", "cuda"):
        ok = _ext.cpu_extension() if backend == "cpu" else _ext.cuda_extension()
        if not ok:
            raise BackendUnavailableError(f"fastnoise backend {backend!r} is not built: "
                                          f"{_ext.load_error('_C' if backend == 'cpu' else '_C_cuda')}; "
                                          f"{_ext.REBUILD_HINT}")
        fn = getattr(torch.ops.fastnoise_kernels, name)
    elif backend == "triton":
        fn = getattr(importlib.import_module(f"fastnoise.triton_kernels.{family}"), name)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    _cache[key] = fn
    return fn
