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


def pytest_collection_modifyitems(config, items):
    """Mark every GPU test `gpu` (pyproject.toml): `pytest -m gpu` is what `make gpu-check` runs on a GPU."""
    for item in items:
        if _needs_gpu(item):
            item.add_marker(pytest.mark.gpu)
