"""`noise_add`: additive Gaussian noise with in-kernel Philox (RSE / PNI style)."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .. import _backend
from . import _noise


def noise_add(x: torch.Tensor, sigma: Union[float, torch.Tensor], *, seed: Optional[int] = None,
              offset: Optional[int] = None, state: Optional[torch.Tensor] = None,
              backend: Optional[str] = None) -> torch.Tensor:
    """``y = x + sigma * delta``, delta ~ N(0, 1) drawn in the kernel from the Philox stream.

    Shapes: x is any floating tensor [...] (float32/16/bf16/64; math in float32, float64 for float64);
    sigma >= 0 is a Python float or a tensor of x's dtype and device broadcastable to x (scalar,
    per-channel e.g. [C, 1, 1], per-element). Returns y with x's shape and dtype.

    Noise: element i (flat, row-major index) of x uses element ``offset + i`` of the normal stream of
    ``seed`` (exactly `fastnoise.rng.normal`). `state` (int64 [seed, offset] on x's device) wins; else
    `seed` / `offset` build one; else the global stream (`fastnoise.rng.next_state`) advances.

    Differentiable w.r.t. x and sigma; the backward regenerates delta from the state (nothing of x's
    size is saved): dy/dx = 1, dL/dsigma = sum over broadcast dims of g * delta.
    """
    x = _noise.check_x(x)
    sig, inner = _noise.param("sigma", sigma, x, nonnegative=True)
    st = _noise.resolve_state(x, seed, offset, state)
    return _noise_add(x, sig, st, inner, _backend.resolve(x.device, backend))


@torch.library.custom_op("fastnoise::noise_add", mutates_args=())
def _noise_add(x: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, inner: int, backend: str) -> torch.Tensor:
    return _noise.forward(x, sigma, sigma.new_empty(0), state, _noise.OP_ADD, inner, 1, backend)


@_noise_add.register_fake
def _(x, sigma, state, inner, backend):
    return _noise.fake_forward(x)


def _setup_context(ctx, inputs, output):
    x, sigma, state, inner, backend = inputs
    ctx.save_for_backward(sigma, state)
    ctx.inner, ctx.backend = inner, backend


def _backward(ctx, grad):
    sigma, ctx.state = ctx.saved_tensors
    gx, gs, _ = _noise.backward(ctx, grad, _noise.OP_ADD, sigma, None, None, ctx.inner, 1,
                                ctx.needs_input_grad[0], ctx.needs_input_grad[1], False)
    return gx, gs, None, None, None


_noise_add.register_autograd(_backward, setup_context=_setup_context)
