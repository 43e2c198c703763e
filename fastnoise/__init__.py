"""fastnoise: fast noise-injection defenses against adversarial attacks for PyTorch.

Ops (`fastnoise.ops`), the shared Philox RNG (`fastnoise.rng`), drop-in layers (`fastnoise.nn`)
and backends `reference`, `cpu` (C++), `triton` and `cuda` chosen with `use_backend`.
"""
from . import _ext
from ._backend import BACKENDS, BackendUnavailableError, available_backends, current_backend, use_backend
from .version import __version__
from . import rng, ops
from .convert import convert

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "current_backend", "use_backend",
           "rng", "ops", "convert", "__version__", "info"]


def info() -> str:
    """What is built, for which torch / CUDA / arch, and which backends are usable."""
    from ._info import info_text
    return info_text()
