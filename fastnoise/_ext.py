"""Loading of the compiled extensions and of the build metadata.

`fastnoise._C` (C++ CPU kernels) and `fastnoise._C_cuda` (CUDA kernels) register device kernels in
the `fastnoise_kernels` torch library namespace when imported. A failed import is remembered with its
reason so that asking for that backend later says why it is missing.
"""
from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Optional

import torch

_BUILD_INFO_PATH = Path(__file__).with_name("_build_info.json")
_load_errors: dict[str, str] = {}
_loaded: dict[str, bool] = {}

REBUILD_HINT = ("rebuild fastnoise against the installed torch: "
                "`pip install --no-build-isolation -e .` from the source tree (or `make test`)")


def build_info() -> dict:
    """The metadata setup.py recorded at build time ({} when fastnoise was never built)."""
    try:
        return json.loads(_BUILD_INFO_PATH.read_text())
    except (OSError, ValueError):
        return {}


def _check_build_matches() -> None:
    info = build_info()
    built = info.get("torch")
    if built and built != torch.__version__:
        warnings.warn(
            f"fastnoise was built against torch {built} but torch {torch.__version__} is installed; "
            f"the C++/CUDA backends may fail to load. Fix: {REBUILD_HINT}.", RuntimeWarning, stacklevel=3)


def _load(module: str) -> bool:
    if module in _loaded:
        return _loaded[module]
    try:
        importlib.import_module(f"fastnoise.{module}")
        _loaded[module] = True
    except ImportError as e:  # not built, or built against another torch (undefined symbols)
        _loaded[module] = False
        _load_errors[module] = f"{type(e).__name__}: {e}"
    return _loaded[module]


def cpu_extension() -> bool:
    """True when the C++ CPU kernels are loaded."""
    return _load("_C")


def cuda_extension() -> bool:
    """True when the CUDA kernels are loaded (needs the CPU extension for the op schemas)."""
    return cpu_extension() and _load("_C_cuda")


def load_error(module: str) -> Optional[str]:
    """Why `fastnoise.<module>` could not be imported, or None."""
    _load(module)
    return _load_errors.get(module)


_check_build_matches()
# Load the kernels now, not on first use: importing inside a torch.compile trace breaks fullgraph.
cpu_extension()
if torch.cuda.is_available():
    _load("_C_cuda")
