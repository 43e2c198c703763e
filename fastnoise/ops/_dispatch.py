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
    fn = _cache.get((family, name, backend))
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
        key = "CPU" if backend == "cpu" else "CUDA"
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastnoise_kernels::{name}", key):
            raise BackendUnavailableError(_not_implemented(family, backend))
    elif backend == "triton":
        try:
            module = importlib.import_module(f"fastnoise.triton_kernels.{family}")
        except ModuleNotFoundError as e:
            if e.name != f"fastnoise.triton_kernels.{family}":
                raise
            raise BackendUnavailableError(_not_implemented(family, backend)) from None
        fn = getattr(module, name)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    _cache[(family, name, backend)] = fn
    return fn


def _not_implemented(family: str, backend: str) -> str:
    return (f"the {family!r} op family has no {backend!r} kernel (not implemented yet); "
            f"use one of the backends it has, e.g. 'cpu' or 'reference' on CPU tensors")
