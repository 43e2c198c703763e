"""Loading of the compiled extensions and of the build metadata.

`fastnoise._C` (C++ CPU kernels) and `fastnoise._C_cuda` (CUDA kernels) register device kernels in
the `fastnoise_kernels` torch library namespace when imported. The CPU kernels are built once per CPU
capability (files `fastnoise/_C_<capability>`); exactly one of them is loaded, under the name
`fastnoise._C`, chosen once here by `fastnoise._cpu_capability` (FASTNOISE_CPU_CAPABILITY overrides it).
A failed import is remembered with its reason so that asking for that backend later says why it is missing.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import torch

from . import _cpu_capability

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


_cpu_selected: Optional[str] = None


def cpu_capabilities() -> tuple[list, list]:
    """(built, supported): the CPU capabilities built (fastnoise/_C_<name>) and those this CPU runs, fastest first."""
    built = build_info().get("cpu_capabilities", {})
    return list(built), _cpu_capability.supported(built, _cpu_capability.cpu_flags())


def cpu_capability() -> Optional[str]:
    """The CPU capability whose kernels are loaded ("avx512", "avx2", "generic" or "native"), None if none is."""
    return _cpu_selected if cpu_extension() else None


def _select_cpu() -> str:
    """The capability to load; raises CpuCapabilityError for a FASTNOISE_CPU_CAPABILITY that cannot work."""
    info = build_info()
    built = info.get("cpu_capabilities", {})
    flags = _cpu_capability.cpu_flags()
    req = _cpu_capability.requested()
    name = _cpu_capability.select(built, flags, req, info.get("cpu_capabilities_known", _cpu_capability.PREFERENCE))
    if not (req or "").strip() and "native" in built and name != "native":
        missing = sorted(set(built["native"]) - flags)
        warnings.warn(f"fastnoise's -march=native build cannot run on this CPU (lacks {', '.join(missing[:8])}); "
                      f"using the {name} build", RuntimeWarning, stacklevel=3)
    return name


def _import_cpu(name: str) -> None:
    """Import fastnoise/_C_<name> as the module `fastnoise._C` (its init function is PyInit__C)."""
    base = Path(__file__).with_name(f"_C_{name}")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = base.with_name(base.name + suffix)
        if path.exists():
            break
    else:
        raise ImportError(f"the {name} build of the CPU kernels ({base.name}*.so) is missing")
    spec = importlib.util.spec_from_file_location("fastnoise._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["fastnoise._C"] = module


def _load(module: str) -> bool:
    global _cpu_selected
    if module in _loaded:
        return _loaded[module]
    try:
        if module == "_C":
            if not build_info().get("cpu_capabilities"):
                raise ImportError("no CPU build of the kernels is recorded in _build_info.json (not built)")
            _cpu_selected = _select_cpu()
            _import_cpu(_cpu_selected)
        else:
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
