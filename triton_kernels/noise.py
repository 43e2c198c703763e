"""Triton kernels of the noise ops (fastnoise_kernels::noise_forward / noise_backward; math of
csrc/noise/noise_math.h): op 0 add, 1 mul, 2 sal. Element i of x uses the Philox normal of stream
element offset + i (philox.normal_at) and parameters a[(i // inner_a) % Pa], b[(i // inner_b) % Pb].
"""
import torch
import triton
import triton.language as tl

from .philox import load_state, normal_at

OP_ADD = tl.constexpr(0)
OP_MUL = tl.constexpr(1)
OP_SAL = tl.constexpr(2)


@triton.jit
def _load_params(a_ptr, Pa, inner_a, b_ptr, Pb, inner_b, i, mask):
    a = tl.load(a_ptr + (i // inner_a) % Pa, mask=mask, other=0.0)
    b = tl.load(b_ptr + (i // inner_b) % Pb, mask=mask, other=0.0)
    return a, b


@triton.jit
def _to_bf16_rtne(v):
    """float32 -> bfloat16, round to nearest even, by bits (the interpreter's cast truncates)."""
    bits = v.to(tl.uint32, bitcast=True)
    rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16
    rounded = tl.where(v != v, 0x7FC0, rounded)
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _store(ptr, i, v, mask):
    """Store v in the destination's dtype, rounding to nearest even."""
    if ptr.dtype.element_ty == tl.bfloat16:
        tl.store(ptr + i, _to_bf16_rtne(v), mask=mask)
    else:
        tl.store(ptr + i, v.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _delta(state_ptr, i, MATH: tl.constexpr):
    seed_lo, seed_hi, offset = load_state(state_ptr)
    return normal_at(seed_lo, seed_hi, offset + i).to(MATH)


@triton.jit
def _noise_forward_kernel(x_ptr, y_ptr, a_ptr, b_ptr, state_ptr, n, Pa, inner_a, Pb, inner_b,
                          OP: tl.constexpr, MATH: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    x = tl.load(x_ptr + i, mask=mask, other=0.0).to(MATH)
    a, b = _load_params(a_ptr, Pa, inner_a, b_ptr, Pb, inner_b, i, mask)
    d = _delta(state_ptr, i, MATH)
    if OP == OP_ADD:
        y = x + a * d
    elif OP == OP_MUL:
        y = x * (a + b * d)
    else:
        y = x + d * tl.exp((x * a + b) * 0.5)
    _store(y_ptr, i, y, mask)


@triton.jit
def _noise_backward_kernel(g_ptr, x_ptr, gx_ptr, ga_ptr, gb_ptr, a_ptr, b_ptr, state_ptr, n, Pa, inner_a, Pb, inner_b,
                           OP: tl.constexpr, NEED_X: tl.constexpr, NEED_A: tl.constexpr, NEED_B: tl.constexpr,
                           MATH: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    g = tl.load(g_ptr + i, mask=mask, other=0.0).to(MATH)
    a, b = _load_params(a_ptr, Pa, inner_a, b_ptr, Pb, inner_b, i, mask)
    d = _delta(state_ptr, i, MATH)
    if OP == OP_ADD:
        gx = g
        ga = g * d
        gb = g * 0.0
    elif OP == OP_MUL:
        x = tl.load(x_ptr + i, mask=mask, other=0.0).to(MATH)
        gx = g * (a + b * d)
        ga = g * x
        gb = g * x * d
    else:
        x = tl.load(x_ptr + i, mask=mask, other=0.0).to(MATH)
        hde = 0.5 * g * d * tl.exp((x * a + b) * 0.5)
        gx = g + hde * a
        ga = hde * x
        gb = hde
    if NEED_X:
        _store(gx_ptr, i, gx, mask)
    if NEED_A:
        tl.store(ga_ptr + i, ga, mask=mask)
    if NEED_B:
        tl.store(gb_ptr + i, gb, mask=mask)


def _math(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _param(p: torch.Tensor, inner: int, like: torch.Tensor):
    if p.numel() == 0:
        return torch.zeros(1, dtype=like.dtype, device=like.device), 1, 1
    return p.contiguous(), p.numel(), max(int(inner), 1)


def noise_forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor, op: int, inner_a: int,
                  inner_b: int, block: int = 1024) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    n = x.numel()
    if n:
        pa, Pa, ia = _param(a, inner_a, a)
        pb, Pb, ib = _param(b, inner_b, a)
        _noise_forward_kernel[(triton.cdiv(n, block),)](x, y, pa, pb, state, n, Pa, ia, Pb, ib,
                                                        OP=op, MATH=_math(x.dtype), BLOCK=block)
    return y


def noise_backward(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor, op: int,
                   inner_a: int, inner_b: int, need: int, block: int = 1024):
    g = grad.contiguous()
    x = x.contiguous() if op != 0 else g
    n = g.numel()
    md = torch.float64 if g.dtype == torch.float64 else torch.float32
    gx = torch.empty(g.shape, dtype=g.dtype, device=g.device) if need & 1 else g.new_empty(0)
    ga = g.new_empty(n if need & 2 else 0, dtype=md)
    gb = g.new_empty(n if need & 4 else 0, dtype=md)
    if n:
        pa, Pa, ia = _param(a, inner_a, a)
        pb, Pb, ib = _param(b, inner_b, a)
        dummy = torch.empty(1, dtype=md, device=g.device)
        _noise_backward_kernel[(triton.cdiv(n, block),)](
            g, x, gx if need & 1 else g, ga if need & 2 else dummy, gb if need & 4 else dummy, pa, pb, state, n,
            Pa, ia, Pb, ib, OP=op, NEED_X=bool(need & 1), NEED_A=bool(need & 2), NEED_B=bool(need & 4),
            MATH=_math(g.dtype), BLOCK=block)
    if need & 2:
        ga = _reduce(ga, a.numel(), inner_a)
    if need & 4:
        gb = _reduce(gb, b.numel(), inner_b)
    return gx, ga, gb


def _reduce(t: torch.Tensor, P: int, inner: int) -> torch.Tensor:
    """Per-element terms [numel] -> the [P] gradient of a parameter (sum over the broadcast dims)."""
    n = t.numel()
    if n == 0 or P == 0:
        return t.new_zeros(P)
    return t.view(n // (P * inner), P, inner).sum(dim=(0, 2))
