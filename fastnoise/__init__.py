"""fastnoise: fast noise-injection defenses against adversarial attacks for PyTorch.

Ops (`fastnoise.ops`), the shared Philox RNG (`fastnoise.rng`), drop-in layers (`fastnoise.nn`), defense
methods (`fastnoise.methods`, `fastnoise.convert`), training (`fastnoise.train`), robust evaluation
(`fastnoise.attacks`), data sets and architectures (`fastnoise.data`, `fastnoise.models`), and backends
`reference`, `cpu` (C++), `triton` and `cuda` chosen with `use_backend`. The subpackages load on first
attribute access (``fastnoise.attacks.evaluate`` works after ``import fastnoise``), so the import stays
cheap; the kernels and ops load at import (an import inside a torch.compile trace breaks fullgraph).
"""
from . import _ext
from ._cpu_capability import CpuCapabilityError
from ._backend import BACKENDS, BackendUnavailableError, available_backends, current_backend, use_backend
from .version import __version__
from . import rng, ops
from .convert import convert
from .bitops import bitops

#: public subpackages / modules loaded on first use
SUBPACKAGES = ("nn", "methods", "train", "attacks", "data", "models", "nenni", "adversarial")

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "current_backend", "use_backend",
           "rng", "ops", "convert", "bitops", "__version__", "info", "cpu_capability",
           "CpuCapabilityError"] + list(SUBPACKAGES)


def cpu_capability():
    """The instruction set of the CPU kernels in use: "avx512", "avx2", "generic" or "native" (None: not built).

    Chosen once at `import fastnoise` from the running CPU (the fastest build it supports) unless the
    environment variable FASTNOISE_CPU_CAPABILITY names one; every choice gives the same results.

    >>> fastnoise.cpu_capability()   # doctest: +SKIP
    'avx2'
    """
    return _ext.cpu_capability()


def info() -> str:
    """What is built, for which torch / CUDA / arch, which backends are usable, and the defense methods."""
    from ._info import info_text
    return info_text()


def __getattr__(name: str):
    if name in SUBPACKAGES:
        import importlib
        return importlib.import_module(f"fastnoise.{name}")
    raise AttributeError(f"module 'fastnoise' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBPACKAGES))
