"""`fastnoise::philox`: the raw / uniform / normal Philox streams of `fastnoise.rng` as a custom op.

The public functions are `fastnoise.rng.raw`, `uniform` and `normal` (the RNG contract and its bit
layout live in fastnoise/rng.py, below the ops, which use its states). They call this op through
``torch.ops.fastnoise.philox``; the op picks the kernel of the "rng" family from the dispatch table.
"""
from __future__ import annotations

import torch

from ..rng import KIND_RAW
from ._dispatch import kernel

__all__: list[str] = []


@torch.library.custom_op("fastnoise::philox", mutates_args=())
def _philox(state: torch.Tensor, count: int, kind: int, backend: str) -> torch.Tensor:
    return kernel("rng", "philox", backend)(state, count, kind)


@_philox.register_fake
def _(state, count, kind, backend):
    return state.new_empty(count, dtype=torch.int64 if kind == KIND_RAW else torch.float32)
