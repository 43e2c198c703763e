"""`noise_sal`: the Stochastic Augmentation Layer of seed 003 with in-kernel Philox."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .. import _backend
from . import _noise


def noise_sal(x: torch.Tensor, w: Union[float, torch.Tensor], b: Union[float, torch.Tensor], *,
              seed: Optional[int] = None, offset: Optional[int] = None, state: Optional[torch.Tensor] = None,
              backend: Optional[str] = None) -> torch.Tensor:
    """``y = x + delta * exp((x * w + b) / 2)``: SAL, seed 003 Eq. (2) ``Sigma_i = X_i . W + B`` (elementwise,
    one weight and bias per feature) and Eq. (3) ``Y_i = X_i + N(0, 1) . exp(Sigma_i / 2)``.

    Shapes: x is [N, ...] (float32/16/bf16/64; math in float32, float64 for float64). w and b are Python
    floats or tensors of x's dtype and device with shape ``x.shape[1:]`` (one per input feature, as in
    the paper) or broadcastable to it (e.g. per-channel [C, 1, 1]); shared over the batch. delta has
    x's shape (a fresh draw per sample).

    Noise: element i of x uses element ``offset + i`` of the normal stream (`fastnoise.rng.normal`);
    `state` wins over `seed` / `offset`, else the global stream advances.

    Differentiable w.r.t. x, w and b (reparameterization trick); the backward regenerates delta and
    saves x only. With e = exp((x w + b) / 2): dy/dx = 1 + delta e w / 2, dy/dw = delta e x / 2,
    dy/db = delta e / 2.
    """
    x = _noise.check_x(x, batch=True)
    wf, inner_w = _noise.param("w", w, x, batch=False)
    bf, inner_b = _noise.param("b", b, x, batch=False)
    st = _noise.resolve_state(x, seed, offset, state)
    return _noise_sal(x, wf, bf, st, inner_w, inner_b, _backend.resolve(x.device, backend))


@torch.library.custom_op("fastnoise::noise_sal", mutates_args=())
def _noise_sal(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, state: torch.Tensor, inner_w: int, inner_b: int,
               backend: str) -> torch.Tensor:
    return _noise.forward(x, w, b, state, _noise.OP_SAL, inner_w, inner_b, backend)


@_noise_sal.register_fake
def _(x, w, b, state, inner_w, inner_b, backend):
    return _noise.fake_forward(x)


def _setup_context(ctx, inputs, output):
    x, w, b, state, inner_w, inner_b, backend = inputs
    ctx.save_for_backward(x, w, b, state)
    ctx.inner_w, ctx.inner_b, ctx.backend = inner_w, inner_b, backend


def _backward(ctx, grad):
    x, w, b, ctx.state = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad[:3]
    gx, gw, gb = _noise.backward(ctx, grad, _noise.OP_SAL, w, b, x, ctx.inner_w, ctx.inner_b, nx, nw, nb)
    return gx, gw, gb, None, None, None, None


_noise_sal.register_autograd(_backward, setup_context=_setup_context)
