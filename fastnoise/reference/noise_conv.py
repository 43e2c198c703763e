"""Eager PyTorch references of the noise-conv kernels (fastnoise_kernels::noise_conv2d / _backward).

Same signatures as the kernel schemas in csrc/register.cpp (see fastnoise/ops/noise_conv.py for the math,
the config and the stream layout). The forward builds the noisy conv from explicit noise tensors (the
NumPy Philox of fastnoise.reference.rng); the backward rebuilds the same graph with autograd and
differentiates it: the ground truth every backend is tested against.

`eager_composition` is what a user would write in plain PyTorch (``torch.randn`` noise, elementwise ops,
``F.conv2d``): the baseline of the benchmark and of the saved-bytes comparison.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from .rng import philox


# ---- the kernel contract: config, stream layout (csrc/noise_conv/config.h; fastnoise.ops.noise_conv re-exports) --

# site modes
IN_NONE, IN_MUL, IN_ADD = 0, 1, 2
W_NONE, W_ADD, W_REPLACE = 0, 1, 2
OUT_NONE, OUT_ADD = 0, 1
# bits of `need` in the backward kernel
NEED_X, NEED_W, NEED_BIAS, NEED_IN_A, NEED_IN_B, NEED_W_ALPHA, NEED_OUT_SIGMA = 1, 2, 4, 8, 16, 32, 64


class Config(NamedTuple):
    """The integer kernel configuration (``cfg: int[]`` of the kernel schema, in this order)."""
    in_mode: int = IN_NONE
    in_inner_a: int = 1
    in_inner_b: int = 1
    in_shared: int = 0
    in_std: int = 0
    w_mode: int = W_NONE
    w_inner: int = 1
    w_std: int = 0
    out_mode: int = OUT_NONE
    out_inner: int = 1
    out_shared: int = 0
    out_std: int = 0


def _r4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


class Layout(NamedTuple):
    """Stream offsets of the three sites (relative to the state's offset) and the call's total."""
    base_in: int
    base_w: int
    base_out: int
    total: int
    n_in: int
    n_w: int
    n_out: int


def layout(cfg: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int], y_shape: Sequence[int]) -> Layout:
    """The stream layout of one call (module docstring)."""
    c = Config(*cfg)
    chw = math.prod(x_shape[1:])
    nl = math.prod(y_shape[1:])
    n_in = 0 if c.in_mode == IN_NONE else (chw if c.in_shared else x_shape[0] * chw)
    n_w = 0 if c.w_mode == W_NONE else math.prod(w_shape)
    n_out = 0 if c.out_mode == OUT_NONE else (nl if c.out_shared else y_shape[0] * nl)
    b_w = _r4(n_in)
    b_out = b_w + _r4(n_w)
    return Layout(0, b_w, b_out, b_out + _r4(n_out), n_in, n_w, n_out)


def _out_shape(x_shape, w_shape, stride, padding, dilation) -> tuple:
    ho = (x_shape[2] + 2 * padding[0] - dilation[0] * (w_shape[2] - 1) - 1) // stride[0] + 1
    wo = (x_shape[3] + 2 * padding[1] - dilation[1] * (w_shape[3] - 1) - 1) // stride[1] + 1
    return (x_shape[0], w_shape[0], ho, wo)


# ---- the reference kernels ----------------------------------------------------------------------------

def math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _normals(state: torch.Tensor, base: int, n: int, md: torch.dtype, device) -> torch.Tensor:
    st = state.detach().cpu().clone()
    st[1] += base
    return philox(st, n, 2).to(device=device, dtype=md)


def _expand(p: torch.Tensor, inner: int, n: int) -> torch.Tensor:
    """Values of a flat [P] parameter for the n elements of one sample (element j uses p[(j // inner) % P])."""
    idx = (torch.arange(n, device=p.device) // inner) % p.numel()
    return p[idx]


def _std(t: torch.Tensor, md: torch.dtype) -> torch.Tensor:
    t = t.detach()
    if t.numel() < 2:
        return torch.zeros((), dtype=md, device=t.device)
    return t.to(md).std()


def _graph(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation, groups, cfg,
           scales, stats: Optional[torch.Tensor] = None):
    """(y, stats) of the noisy conv, differentiable in every tensor argument. With `stats` given, the
    scales s are taken from it (the backward), else computed (std detached)."""
    c = Config(*cfg)
    md = math_dtype(x.dtype)
    y_shape = _out_shape(x.shape, weight.shape, stride, padding, dilation)
    lay = layout(cfg, tuple(x.shape), tuple(weight.shape), y_shape)
    dev = x.device
    one = torch.ones((), dtype=md, device=dev)
    s = [None, None, None]
    if stats is not None:
        s = [stats[0].to(md), stats[1].to(md), stats[2].to(md)]
    chw = math.prod(x.shape[1:])
    xp = x
    if c.in_mode != IN_NONE:
        if s[0] is None:
            s[0] = scales[0] * (_std(x, md) if c.in_std else one)
        shape = x.shape[1:] if c.in_shared else x.shape
        d = _normals(state, lay.base_in, lay.n_in, md, dev).reshape(shape)
        b = _expand(in_b, c.in_inner_b, chw).reshape(x.shape[1:])
        xm = x.to(md)
        if c.in_mode == IN_MUL:
            a = _expand(in_a, c.in_inner_a, chw).reshape(x.shape[1:])
            xp = xm * (a + s[0] * b * d)
        else:
            xp = xm + s[0] * b * d
        xp = xp.to(x.dtype)
    wp = weight
    if c.w_mode != W_NONE:
        if s[1] is None:
            s[1] = scales[1] * (_std(weight, md) if c.w_std else one)
        eta = _normals(state, lay.base_w, lay.n_w, md, dev).reshape(weight.shape)
        al = _expand(w_alpha, c.w_inner, weight.numel()).reshape(weight.shape)
        noise = s[1] * al * eta
        wm = weight.to(md)
        if c.w_mode == W_REPLACE:
            wp = torch.where(w_mask.reshape(-1, 1, 1, 1), noise, wm)
        else:
            wp = wm + (noise if w_mask is None else torch.where(w_mask, noise, torch.zeros_like(noise)))
        wp = wp.to(weight.dtype)
    y = F.conv2d(xp, wp, bias, stride, padding, dilation, groups)
    if c.out_mode != OUT_NONE:
        if s[2] is None:
            s[2] = scales[2] * (_std(y, md) if c.out_std else one)
        nl = math.prod(y.shape[1:])
        shape = y.shape[1:] if c.out_shared else y.shape
        e = _normals(state, lay.base_out, lay.n_out, md, dev).reshape(shape)
        sig = _expand(out_sigma, c.out_inner, nl).reshape(y.shape[1:])
        y = (y.to(md) + s[2] * sig * e).to(x.dtype)
    st = torch.stack([(v if v is not None else one).to(md).reshape(()) for v in s])
    return y, st


def noise_conv2d(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation, groups,
                 cfg, scales):
    """Kernel signature of fastnoise_kernels::noise_conv2d -> (y contiguous [B, N, H', W'], stats [3])."""
    with torch.no_grad():
        y, st = _graph(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation,
                       groups, cfg, scales)
    return y.contiguous(), st


def noise_conv2d_backward(grad, x, weight, in_a, in_b, w_alpha, w_mask, out_sigma, state, stats, stride, padding,
                          dilation, groups, cfg, need):
    """Kernel signature of fastnoise_kernels::noise_conv2d_backward: autograd through `_graph`."""
    md = math_dtype(x.dtype)
    named = [("x", x, NEED_X), ("weight", weight, NEED_W), ("in_a", in_a, NEED_IN_A), ("in_b", in_b, NEED_IN_B),
             ("w_alpha", w_alpha, NEED_W_ALPHA), ("out_sigma", out_sigma, NEED_OUT_SIGMA)]
    base = {k: t.detach() for k, t, _ in named}
    base["bias"] = torch.zeros(weight.shape[0], dtype=x.dtype, device=x.device)
    keys = [k for k, _, bit in named if need & bit] + (["bias"] if need & NEED_BIAS else [])

    def f(*ts):  # torch.func.vjp: it works inside a custom op's kernel, where autograd is switched off
        kw = dict(base)
        kw.update(zip(keys, ts))
        y, _ = _graph(kw["x"], kw["weight"], kw["bias"], kw["in_a"], kw["in_b"], kw["w_alpha"], w_mask,
                      kw["out_sigma"], state, stride, padding, dilation, groups, cfg, [1.0, 1.0, 1.0], stats=stats)
        return y
    got = {}
    if keys:
        _, vjp = torch.func.vjp(f, *[base[k] for k in keys])
        got = dict(zip(keys, vjp(grad.to(x.dtype))))

    def out(key, like, dtype):
        return got[key].to(dtype).contiguous() if key in got else like.new_empty(0, dtype=dtype)
    return (out("x", x, x.dtype), out("weight", weight, weight.dtype), out("bias", x, x.dtype),
            out("in_a", in_a, md), out("in_b", in_b, md), out("w_alpha", w_alpha, md), out("out_sigma", out_sigma, md))


# ---- the eager composition a user writes (benchmark baseline, saved-bytes comparison) ------------------

def _std_of(t: torch.Tensor) -> torch.Tensor:
    return t.detach().std()


def eager_composition(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *, stride=1,
                      padding=0, dilation=1, groups=1, input_noise=None, weight_noise=None,
                      output_noise=None) -> torch.Tensor:
    """The same noisy conv in plain eager PyTorch: noise tensors from ``torch.randn``, elementwise ops,
    ``F.conv2d``; the sites are `fastnoise.ops.InputNoise` / `WeightNoise` / `OutputNoise` (read by
    attribute: this module sits below fastnoise.ops). Autograd saves what these ops need (the noisy x', W', the noise tensors)."""
    if input_noise is not None:
        n = input_noise
        d = torch.randn((1,) + tuple(x.shape[1:]) if n.shared else x.shape, dtype=x.dtype, device=x.device)
        s = n.scale * (_std_of(x) if n.scale_by_std else 1.0)
        x = x * (n.mu + s * n.sigma * d) if n.mu is not None else x + s * n.sigma * d
    if weight_noise is not None:
        n = weight_noise
        s = n.scale * (_std_of(weight) if n.scale_by_std else 1.0)
        eta = torch.randn_like(weight)
        noise = s * n.alpha * eta
        if n.replace is not None:
            weight = torch.where(n.replace.reshape(-1, 1, 1, 1), noise, weight)
        else:
            weight = weight + (noise if n.keep is None else noise * n.keep)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if output_noise is not None:
        n = output_noise
        s = n.scale * (_std_of(y) if n.scale_by_std else 1.0)
        e = torch.randn((1,) + tuple(y.shape[1:]) if n.shared else y.shape, dtype=y.dtype, device=y.device)
        y = y + s * n.sigma * e
    return y
