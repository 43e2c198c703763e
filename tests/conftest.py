"""Test set-up: Triton kernels run in the interpreter on machines without CUDA.

TRITON_INTERPRET must be set before triton kernels are defined, so it is set here, before any test
imports fastnoise. GPU tests skip with a reason on CPU machines; nothing else is skipped. Every test
that runs on a GPU gets the marker `gpu` (a CUDA device / backend parameter, or a skip reason naming
CUDA or a GPU): `make gpu-check` runs `pytest -m gpu` on a GPU machine and lists them in its dry run.
"""
import os
import re
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import conformance`


def _on_cuda(value) -> bool:
    return (isinstance(value, str) and value == "cuda") or (isinstance(value, torch.device) and value.type == "cuda")


def _needs_gpu(item) -> bool:
    """A test runs on the GPU when a parameter is the CUDA device / backend or its skip reason names CUDA/GPU."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(_on_cuda(v) for v in callspec.params.values()):
        return True
    for mark in item.iter_markers():
        if mark.name in ("skip", "skipif"):
            reason = str(mark.kwargs.get("reason", "")) + " ".join(a for a in mark.args if isinstance(a, str))
            if re.search(r"\b(cuda|gpu)\b", reason, re.IGNORECASE):
                return True
    return False


def _triton_subset(config, items) -> None:
    """FASTNOISE_TRITON_SUBSET=k (CI sets 4, design note 52): under the Triton interpreter keep every k-th
    Triton-on-CPU case of each test function (the first always), so every Triton kernel and test still runs
    in CI while the interpreter's cost shrinks k-fold; `make test-full` (k = 1) and the GPU check run all."""
    k = os.environ.get("FASTNOISE_TRITON_SUBSET", "1")
    if not k.isdigit() or int(k) < 1:
        raise pytest.UsageError(f"FASTNOISE_TRITON_SUBSET must be an integer >= 1, got {k!r}")
    k = int(k)
    if k == 1 or os.environ.get("TRITON_INTERPRET") != "1":
        return
    seen: dict = {}
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "triton" in cs.id.split("-") and "cuda" not in cs.id.split("-"):
            key = (item.module.__name__ if item.module else "", item.originalname)
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n % k:
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_modifyitems(config, items):
    """Mark every GPU test `gpu` (pyproject.toml): `pytest -m gpu` is what `make gpu-check` runs on a GPU."""
    _triton_subset(config, items)
    for item in items:
        if _needs_gpu(item):
            item.add_marker(pytest.mark.gpu)
