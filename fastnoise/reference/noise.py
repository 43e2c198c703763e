"""Eager PyTorch references of the noise kernels (fastnoise_kernels::noise_forward / noise_backward).

Same signatures as the kernel schemas in csrc/register.cpp: `a`, `b` are 1-D parameters in the math
type (float32; float64 for float64 x), element i of x uses ``a[(i // inner_a) % a.numel()]``, `b` may
be empty (unused). The backward returns grad_x and the [P] gradients of a and b (summed over the
broadcast dims). The normals come from the NumPy Philox reference (fastnoise.reference.rng).

`add`, `mul`, `sal` are the plain autograd formulas on a given delta (what a user would write); the
memory test compares what they save for backward with what the fastnoise ops save.
"""
from __future__ import annotations

import torch

from .rng import philox

OP_ADD, OP_MUL, OP_SAL = 0, 1, 2
NEED_X, NEED_A, NEED_B = 1, 2, 4


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _expand(p: torch.Tensor, n: int, inner: int, dtype: torch.dtype) -> torch.Tensor:
    if p.numel() == 0:
        return torch.zeros(n, dtype=dtype, device=p.device)
    idx = (torch.arange(n, device=p.device) // inner) % p.numel()
    return p[idx]


def _delta(n: int, state: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return philox(state, n, 2).to(dtype)


def _forward_math(op: int, x, a, b, d):
    if op == OP_ADD:
        return x + a * d
    if op == OP_MUL:
        return x * (a + b * d)
    return x + d * torch.exp((x * a + b) * 0.5)


def noise_forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor, op: int,
                  inner_a: int, inner_b: int) -> torch.Tensor:
    md = math_dtype(x.dtype)
    n = x.numel()
    xf = x.reshape(-1).to(md)
    y = _forward_math(op, xf, _expand(a, n, inner_a, md), _expand(b, n, inner_b, md), _delta(n, state, md))
    return y.to(x.dtype).reshape(x.shape).contiguous()


def noise_backward(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor,
                   op: int, inner_a: int, inner_b: int, need: int):
    md = math_dtype(grad.dtype)
    n = grad.numel()
    g = grad.reshape(-1).to(md)
    xf = x.reshape(-1).to(md) if op != OP_ADD else torch.zeros_like(g)
    av, bv, d = _expand(a, n, inner_a, md), _expand(b, n, inner_b, md), _delta(n, state, md)
    if op == OP_ADD:
        gx, ga, gb = g, g * d, torch.zeros_like(g)
    elif op == OP_MUL:
        gx, ga, gb = g * (av + bv * d), g * xf, g * xf * d
    else:
        hde = 0.5 * g * d * torch.exp((xf * av + bv) * 0.5)
        gx, ga, gb = g + hde * av, hde * xf, hde
    empty = grad.new_empty(0, dtype=md)
    return (gx.to(grad.dtype).reshape(grad.shape).contiguous() if need & NEED_X else grad.new_empty(0),
            reduce_terms(ga, a.numel(), inner_a) if need & NEED_A else empty.clone(),
            reduce_terms(gb, b.numel(), inner_b) if need & NEED_B else empty.clone())


def reduce_terms(t: torch.Tensor, P: int, inner: int) -> torch.Tensor:
    """Sum per-element terms [numel] to the [P] gradient of a parameter (over the broadcast dims)."""
    n = t.numel()
    if n == 0 or P == 0:
        return t.new_zeros(P)
    return t.view(n // (P * inner), P, inner).sum(dim=(0, 2))


# ---- plain autograd formulas (the eager baseline: delta is a tensor, so autograd saves it) ----------

def add(x: torch.Tensor, sigma, delta: torch.Tensor) -> torch.Tensor:
    return x + sigma * delta


def mul(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return x * (mu + sigma * delta)


def sal(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return x + delta * torch.exp((x * w + b) / 2)
