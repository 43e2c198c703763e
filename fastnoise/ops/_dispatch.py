"""The one table of which backend implements which kernel, and `kernel(family, name, backend)`.

Every kernel of every op family is one row of `TABLE`: (family, kernel) and, per backend, how it
is implemented. The reference (eager PyTorch, `fastnoise.reference.<family>.<kernel>`) exists for
every row: it is the ground truth of the tests. The other columns say

  NATIVE  the compiled kernel ``torch.ops.fastnoise_kernels.<kernel>`` (cpu: fastnoise._C,
          cuda: fastnoise._C_cuda; schema in csrc/register.cpp, picked by the device key)
  TRITON  ``fastnoise.triton_kernels.<family>.<kernel>``, imported on first use
  TORCH   this backend runs the eager torch implementation of the reference on purpose (a GEMM
          that cuBLAS / MKL already does best; the dense backward of the sampled products):
          declared here, so it is never a silent fallback
  None    not implemented: `kernel` raises `BackendUnavailableError` ("not implemented")

All implementations of a row take the same arguments and return the same outputs as the kernel
schema in csrc/register.cpp. The conformance harness (tests/conformance.py) tests exactly the
(backend, device) pairs this table implements and asserts the "not implemented" error for the
others. Adding a kernel is one line here (plus the kernel itself); see docs/architecture.md.
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional

import torch

from .. import _ext
from .._backend import BACKENDS, BackendUnavailableError

NATIVE, TRITON, TORCH = "native", "triton", "torch"

#: backends with a column in TABLE (the reference is implicit in every row)
COLUMNS = ("cpu", "triton", "cuda")

#: (family, kernel) -> (cpu, triton, cuda)
TABLE: dict[tuple[str, str], tuple[Optional[str], Optional[str], Optional[str]]] = {
    # family                 kernel                          cpu      triton   cuda
    ("rng",                "philox"):                    (NATIVE, TRITON, NATIVE),
    ("noise",              "noise_forward"):             (NATIVE, TRITON, NATIVE),
    ("noise",              "noise_backward"):            (NATIVE, TRITON, NATIVE),
    ("mask_blend",         "mask_blend"):                (NATIVE, TRITON, NATIVE),
    ("mask_blend",         "mask_select"):               (NATIVE, TRITON, NATIVE),
    ("mask_blend",         "mask_blend_backward"):       (NATIVE, TRITON, NATIVE),
    ("ternary_projection", "ternary_generate"):          (NATIVE, TRITON, NATIVE),
    ("ternary_projection", "ternary_project"):           (NATIVE, TRITON, NATIVE),
    ("ternary_projection", "ternary_project_t"):         (NATIVE, TRITON, NATIVE),
    ("ternary_projection", "ternary_conv_project"):      (NATIVE, TRITON, NATIVE),
    ("ternary_projection", "ternary_conv_epilogue"):     (NATIVE, TORCH,  TORCH),
    ("ternary_projection", "ternary_conv_epilogue_pooled"): (NATIVE, TORCH, TORCH),
    ("sampled",            "sampled_linear"):            (NATIVE, TRITON, NATIVE),
    ("sampled",            "sampled_linear_backward"):   (NATIVE, TORCH,  NATIVE),
    ("sampled",            "sampled_conv2d"):            (NATIVE, TRITON, NATIVE),
    ("sampled",            "channel_conv2d"):            (NATIVE, TRITON, NATIVE),
    ("sampled",            "channel_conv2d_into"):       (NATIVE, TORCH,  TORCH),
    ("sampled",            "sampled_conv2d_backward"):   (NATIVE, TORCH,  NATIVE),
    ("noise_conv",         "noise_conv2d"):              (NATIVE, TRITON, NATIVE),
    ("noise_conv",         "noise_conv2d_backward"):     (NATIVE, TRITON, NATIVE),
    ("lr_grad",            "lr_grad"):                   (NATIVE, TRITON, NATIVE),
    ("lr_grad",            "lr_pack_bits"):              (NATIVE, TORCH,  TORCH),
    ("lr_grad",            "lif_noise"):                 (NATIVE, TRITON, NATIVE),
}

_cache: dict[tuple[str, str, str], Callable] = {}


def implementation(family: str, name: str, backend: str) -> Optional[str]:
    """How `backend` implements kernel `name` of `family`: "reference", NATIVE, TRITON, TORCH or None."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    row = TABLE.get((family, name))
    if row is None:
        raise KeyError(f"kernel {name!r} of op family {family!r} is not in the dispatch table "
                       f"(fastnoise/ops/_dispatch.py TABLE): add its row")
    return "reference" if backend == "reference" else row[COLUMNS.index(backend)]


def implemented_backends(family: str, names: Optional[list] = None) -> tuple[str, ...]:
    """The backends (BACKENDS order) implementing every kernel `names` of `family` (None: all its kernels)."""
    names = list(names) if names is not None else [n for f, n in TABLE if f == family]
    if not names:
        raise KeyError(f"op family {family!r} has no kernel in the dispatch table")
    return tuple(b for b in BACKENDS if all(implementation(family, n, b) is not None for n in names))


def families() -> list[str]:
    """Op families in the table, in table order."""
    return list(dict.fromkeys(f for f, _ in TABLE))


def kernel(family: str, name: str, backend: str) -> Callable:
    """The function that runs kernel `name` of `family` on `backend` (see the module docstring)."""
    fn = _cache.get((family, name, backend))
    if fn is not None:
        return fn
    how = implementation(family, name, backend)
    if how is None:
        raise BackendUnavailableError(_not_implemented(family, name, backend))
    if how in ("reference", TORCH):
        fn = getattr(importlib.import_module(f"fastnoise.reference.{family}"), name)
    elif how == NATIVE:
        ok = _ext.cpu_extension() if backend == "cpu" else _ext.cuda_extension()
        if not ok:
            raise BackendUnavailableError(f"fastnoise backend {backend!r} is not built: "
                                          f"{_ext.load_error('_C' if backend == 'cpu' else '_C_cuda')}; "
                                          f"{_ext.REBUILD_HINT}")
        key = "CPU" if backend == "cpu" else "CUDA"
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastnoise_kernels::{name}", key):
            raise BackendUnavailableError(
                f"the {family!r} kernel {name!r} should have a {backend!r} implementation (dispatch table) but "
                f"the built extension registers none for {key}: the build is stale or incomplete; {_ext.REBUILD_HINT}")
        fn = getattr(torch.ops.fastnoise_kernels, name)
    elif how == TRITON:
        fn = getattr(importlib.import_module(f"fastnoise.triton_kernels.{family}"), name)
    else:  # pragma: no cover - the table holds only the values above
        raise ValueError(f"dispatch table: unknown implementation {how!r} for {(family, name, backend)}")
    _cache[(family, name, backend)] = fn
    return fn


def _not_implemented(family: str, name: str, backend: str) -> str:
    have = [b for b in BACKENDS if implementation(family, name, b) is not None]
    return (f"the {family!r} op family has no {backend!r} kernel for {name!r} (not implemented yet); "
            f"backends that implement it: {', '.join(have)}")
