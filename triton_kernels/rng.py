"""Triton launcher of the raw / uniform / normal Philox stream (fastnoise_kernels::philox)."""
import torch
import triton
import triton.language as tl

from .philox import load_state, normal_at, raw_at, uniform_from_bits


@triton.jit
def _philox_kernel(out_ptr, state_ptr, count, KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < count
    seed_lo, seed_hi, offset = load_state(state_ptr)
    g = offset + i
    if KIND == 0:
        tl.store(out_ptr + i, raw_at(seed_lo, seed_hi, g).to(tl.int64), mask=mask)
    elif KIND == 1:
        tl.store(out_ptr + i, uniform_from_bits(raw_at(seed_lo, seed_hi, g)), mask=mask)
    else:
        tl.store(out_ptr + i, normal_at(seed_lo, seed_hi, g), mask=mask)


def philox(state: torch.Tensor, count: int, kind: int, block: int = 1024) -> torch.Tensor:
    out = torch.empty(count, dtype=torch.int64 if kind == 0 else torch.float32, device=state.device)
    if count:
        _philox_kernel[(triton.cdiv(count, block),)](out, state, count, KIND=kind, BLOCK=block)
    return out
