"""`noise_mul`: multiplicative random weight x * (mu + sigma * delta) (CTRW, seed 001) with in-kernel Philox."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .. import _backend
from . import _noise


def noise_mul(x: torch.Tensor, mu: Union[float, torch.Tensor], sigma: Union[float, torch.Tensor], *,
              seed: Optional[int] = None, offset: Optional[int] = None, state: Optional[torch.Tensor] = None,
              backend: Optional[str] = None) -> torch.Tensor:
    """``y = x * (mu + sigma * delta)``: the random weight ``W^r = mu + delta * sigma`` of CTRW (seed 001,
    Eq. 4) applied by a Hadamard product to the layer input.

    Shapes: x is [N, ...] (float32/16/bf16/64; math in float32, float64 for float64). mu and sigma are
    Python floats or tensors of x's dtype and device with shape ``x.shape[1:]`` (or broadcastable to
    it, e.g. per-channel [C, 1, 1]); they are shared over the batch. delta has x's full shape: every
    sample of the batch gets a fresh draw of the random weight. sigma >= 0.

    Noise: element i of x uses element ``offset + i`` of the normal stream (`fastnoise.rng.normal`);
    `state` wins over `seed` / `offset`, else the global stream advances.

    Differentiable w.r.t. x, mu and sigma; the backward regenerates delta (it saves x, like the eager
    formula, but not delta): dL/dx = g (mu + sigma delta), dL/dmu = sum_N g x, dL/dsigma = sum_N g x delta.
    """
    x = _noise.check_x(x, batch=True)
    m, inner_m = _noise.param("mu", mu, x, batch=False)
    s, inner_s = _noise.param("sigma", sigma, x, nonnegative=True, batch=False)
    st = _noise.resolve_state(x, seed, offset, state)
    return _noise_mul(x, m, s, st, inner_m, inner_s, _backend.resolve(x.device, backend))


@torch.library.custom_op("fastnoise::noise_mul", mutates_args=())
def _noise_mul(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, inner_mu: int,
               inner_sigma: int, backend: str) -> torch.Tensor:
    return _noise.forward(x, mu, sigma, state, _noise.OP_MUL, inner_mu, inner_sigma, backend)


@_noise_mul.register_fake
def _(x, mu, sigma, state, inner_mu, inner_sigma, backend):
    return _noise.fake_forward(x)


def _setup_context(ctx, inputs, output):
    x, mu, sigma, state, inner_mu, inner_sigma, backend = inputs
    need_params = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    ctx.save_for_backward(x if need_params else None, mu, sigma, state)
    ctx.x_shape = x.shape
    ctx.inner_mu, ctx.inner_sigma, ctx.backend = inner_mu, inner_sigma, backend


def _backward(ctx, grad):
    x, mu, sigma, ctx.state = ctx.saved_tensors
    if x is None:  # only grad_x is needed: the kernel reads no x
        x = grad.new_empty(ctx.x_shape) if grad.numel() == 0 else grad
    nx, nm, ns = ctx.needs_input_grad[:3]
    gx, gm, gs = _noise.backward(ctx, grad, _noise.OP_MUL, mu, sigma, x, ctx.inner_mu, ctx.inner_sigma, nx, nm, ns)
    return gx, gm, gs, None, None, None, None


_noise_mul.register_autograd(_backward, setup_context=_setup_context)
