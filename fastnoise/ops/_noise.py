"""Shared pieces of the noise ops (noise_add, noise_mul, noise_sal): state resolution, parameter layout,
the shared backward custom op (its kernels sum the per-element parameter gradients over the
broadcast dims: in-kernel per-thread partials on the CPU, a sum over the [outer, P, inner] view elsewhere).

Kernel layout of a parameter: a contiguous 1-D tensor of P values in the math type (float32; float64
for float64 x); element i (flat, row-major) of x uses value ``(i // inner) % P``. A parameter whose
non-broadcast dimensions form one contiguous run (scalar, per-channel [C,1,1], per-feature x.shape[1:],
per-element) is used as is; any other broadcast pattern is expanded over its span (never over the batch
unless it spans the batch). The flattening is done with differentiable torch ops, so autograd maps the
[P] gradient of the custom op back to the user's parameter shape.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .. import _checks, rng
from ._dispatch import kernel

OP_ADD, OP_MUL, OP_SAL = 0, 1, 2
NEED_X, NEED_A, NEED_B = 1, 2, 4

Param = Union[float, int, torch.Tensor]


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_x(x: object, *, batch: bool = False) -> torch.Tensor:
    """A floating x; `batch`: with a batch dimension ([N, ...]: noise_mul / noise_sal, whose parameters are
    shared over the batch), whatever the parameters are (floats or tensors)."""
    x = _checks.floating("x", x)
    if batch and x.dim() == 0:
        raise ValueError("x must have a batch dimension [N, ...] (at least 1 dim), got a 0-d tensor")
    return x


def resolve_state(x: torch.Tensor, seed: Optional[int], offset: Optional[int],
                  state: Optional[torch.Tensor]) -> torch.Tensor:
    """`state` wins; else `seed` / `offset` build one; else the next slice of the global stream."""
    if state is not None:
        if seed is not None or offset is not None:
            raise ValueError("pass either state or seed/offset, not both")
        _checks.rng_state("state", state, x.numel())  # values range-checked on CPU (no host sync elsewhere)
        if state.device != x.device:
            raise ValueError(f"state must be on the device of x, {x.device}, got {state.device}")
        return state
    return rng.next_state(x.numel(), x.device, seed, offset)


def param(name: str, p: Param, x: torch.Tensor, *, nonnegative: bool = False, batch: bool = True
          ) -> tuple[torch.Tensor, int]:
    """(flat parameter in the math type, inner) for the kernel; validates dtype, device, shape, values.

    `batch=False`: the parameter must broadcast to ``x.shape[1:]`` (it is shared over the batch).
    """
    md = math_dtype(x.dtype)
    if not isinstance(p, torch.Tensor):
        v = _checks.number(name, p, lo=0.0 if nonnegative else None)
        return torch.full((1,), v, dtype=md, device=x.device), 1
    _checks.like(name, p, "x", x, shape=False)
    target = tuple(x.shape) if batch else tuple(x.shape[1:])
    if not batch and x.dim() == 0:
        raise ValueError(f"x must have a batch dimension (at least 1 dim) for {name} of shape x.shape[1:], got a 0-d x")
    _checks.broadcastable_to(name, p, target, "x.shape" if batch else "x.shape[1:]")
    if nonnegative:
        _nonnegative(name, p)
    return layout(p, tuple(x.shape), md)


def _nonnegative(name: str, t: torch.Tensor) -> None:
    """Values finite and >= 0 (one reduction: aminmax propagates NaN); skipped while tracing."""
    if _checks._tracing() or t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if not (lo >= 0 and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite and >= 0 everywhere, got min {lo}, max {hi}")


def layout(p: torch.Tensor, shape: tuple, md: torch.dtype) -> tuple[torch.Tensor, int]:
    nd = len(shape)
    ps = (1,) * (nd - p.dim()) + tuple(p.shape)
    live = [d for d in range(nd) if ps[d] != 1]
    if not live:
        return p.reshape(1).to(md), 1
    a, b = live[0], live[-1] + 1
    inner = math.prod(shape[b:])
    span = shape[a:b]
    if all(ps[d] == shape[d] for d in range(a, b)):
        flat = p.reshape(-1)
    else:  # a broadcast inside the span: expand it (differentiable: autograd sums the gradient back)
        flat = p.reshape(ps[a:b]).expand(span).reshape(-1)
    return flat.to(md).contiguous(), max(int(inner), 1)


def forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor, op: int,
            inner_a: int, inner_b: int, backend: str) -> torch.Tensor:
    return kernel("noise", "noise_forward", backend)(x, a, b, state, op, inner_a, inner_b)


def fake_forward(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op("fastnoise::noise_backward", mutates_args=())
def noise_backward(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state: torch.Tensor,
                   op: int, inner_a: int, inner_b: int, need: int, backend: str
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad_x (x's shape) and the [P] gradients of a, b (math type; summed over broadcast dims); empty if not needed."""
    return tuple(kernel("noise", "noise_backward", backend)(grad, x, a, b, state, op, inner_a, inner_b, need))


@noise_backward.register_fake
def _(grad, x, a, b, state, op, inner_a, inner_b, need, backend):
    md = math_dtype(grad.dtype)
    gx = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device) if need & NEED_X else grad.new_empty(0)
    ga = grad.new_empty(a.numel() if need & NEED_A else 0, dtype=md)
    gb = grad.new_empty(b.numel() if need & NEED_B else 0, dtype=md)
    return gx, ga, gb


def _param_grad(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return g if g.shape == p.shape else torch.zeros_like(p)  # (an empty x with an empty parameter)


def backward(ctx, grad: torch.Tensor, op: int, a: torch.Tensor, b: Optional[torch.Tensor], x: Optional[torch.Tensor],
             inner_a: int, inner_b: int, need_x: bool, need_a: bool, need_b: bool):
    """(grad_x, grad_a, grad_b) of a noise op; delta is regenerated from ctx's state, never stored."""
    need = (NEED_X if need_x and op != OP_ADD else 0) | (NEED_A if need_a else 0) | (NEED_B if need_b else 0)
    gx = ga = gb = None
    if need:
        bb = b if b is not None else a.new_empty(0)
        xx = x if x is not None else grad.new_empty(0)
        gx_k, ga_k, gb_k = noise_backward(grad, xx, a, bb, ctx.state, op, inner_a, inner_b, need, ctx.backend)
        if need & NEED_X:
            gx = gx_k
        if need_a:
            ga = _param_grad(ga_k, a)
        if need_b:
            gb = _param_grad(gb_k, bb)
    if need_x and op == OP_ADD:
        gx = grad
    return gx, ga, gb
