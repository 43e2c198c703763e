"""Sampled exact products (NENNI, seed 000): z = W x + b only for the essential neurons.

NENNI computes the exact output z only where a mask selects an *essential* neuron; the others take a
cheap approximation (see `mask_blend`). These ops compute the exact part and nothing else:

* `sampled_linear(x, weight, bias, mask)`: ``out[r, j] = x[r] . W[j] + b[j]`` where ``mask[r, j]``,
  else 0. x ``[..., K]``, weight ``[n, K]``, bias ``[n]`` or None, mask ``[..., n]`` bool.
* `sampled_conv2d(x, weight, bias, mask, ...)`: "position" granularity, the conv output
  ``conv2d(x, W, b)[b, j, h, w]`` where ``mask[b, j, h, w]``, else 0; mask ``[B, n, H', W']`` bool.
* `channel_conv2d(x, weight, bias, keep, ...)`: "channel" granularity, ``keep [B, n]`` bool: the conv
  for kept (sample, channel) pairs, 0 for dropped ones; computed as a dense conv on the kept channels.

Gradients w.r.t. x, weight and bias flow only through selected outputs (the backward zeroes the
unselected output gradients, then runs the dense GEMM / conv backward: the fastest correct choice on
CPU at the keep fractions NENNI uses, see `sampled_is_faster`).

Backends: reference, cpu (csrc/sampled/cpu.cpp), triton (triton_kernels/sampled.py) and cuda
(csrc/sampled/cuda.cu). The GPU kernels are one implicit-im2col GEMM over output tiles that skips
the reduction of tiles with nothing selected; channel granularity orders each sample's channels
kept-first, so only the kept channels are computed.

When to use the sampled kernels rather than "dense product, then blend": `sampled_is_faster`, with
the keep-fraction thresholds measured in `benchmarks/bench_sampled.py` (constants below).

CPU re-run (`python benchmarks/run.py --ops sampled --no-backward`, forward, float32, 2 threads,
torch 2.13 CPU, commit 61f3734 + the GPU kernels; the 2-core machine was shared, load average 3.4,
so the dense reference of identical work varied 3x between rows: read ratios, not absolutes):

| case                                        | reference ms | compile(reference) ms | cpu ms | cpu x_vs_reference |
|---------------------------------------------|--------------|-----------------------|--------|--------------------|
| linear 512->512 b1024 keep=1%               | 11.3         | 3.2                   | 1.3    | 8.85               |
| linear 512->512 b1024 keep=10%              | 18.6         | 24.0                  | 7.9    | 2.36               |
| linear 512->512 b1024 keep=25%              | 31.8         | 20.7                  | 18.2   | 1.75               |
| linear 512->512 b1024 keep=50%              | 35.9         | 40.0                  | 36.0   | 1.00               |
| conv 256->256 8x8 3x3 b32 position keep=1%  | 72.0         | 48.0                  | 32.0   | 2.25               |
| conv 256->256 8x8 3x3 b32 position keep=10% | 48.0         | 44.1                  | 41.6   | 1.15               |
| conv 256->256 8x8 3x3 b32 position keep=25% | 64.6         | 71.9                  | 68.0   | 0.95               |
| conv 256->256 8x8 3x3 b32 position keep=50% | 80.0         | 72.6                  | 100.0  | 0.80               |
| conv 256->256 8x8 3x3 b32 channel keep=1%   | 41.8         | 36.7                  | 9.4    | 4.44               |
| conv 256->256 8x8 3x3 b32 channel keep=10%  | 32.7         | 46.7                  | 12.1   | 2.70               |
| conv 256->256 8x8 3x3 b32 channel keep=25%  | 47.1         | 43.1                  | 40.0   | 1.18               |
| conv 256->256 8x8 3x3 b32 channel keep=50%  | 48.0         | 47.9                  | 56.0   | 0.86               |

The conv crossings (position 10-25 %, channel 25-50 %) agree with the thresholds below; linear crossed
later here (~50 %) but with a reference that varied 3x, which does not outweigh the quiet-machine CPU-time
measurement the thresholds come from, so they are kept.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .. import _backend, _checks
from . import _conv
from ._dispatch import kernel

__all__ = ["sampled_linear", "sampled_conv2d", "channel_conv2d", "sampled_is_faster", "SAMPLED_THRESHOLDS"]

_Pair = _conv.IntPair

# Keep fraction (1 - r) below which the sampled kernel beats "dense product + blend" (forward), per
# device type and kind. CPU: measured on the 2-core AMD EPYC (Zen 5, AVX-512) dev machine, torch 2.13
# CPU, 1 thread, process CPU time (the machine was shared, wall time was too noisy), min of 9 runs:
# conv 256->256, 8x8, 3x3, pad 1, batch 32 (the ResNet-18 layer; per-sample work, so batch 128 scales)
# dense 13.7-15.9 ms; position (sampled_conv2d) 1/10/25/50 %: 3.1/9.4/19.0/37.9 ms; channel
# (channel_conv2d): 2.2/4.4/10.4/19.9 ms. linear 512->512, batch 1024: dense 5.5-6.3 ms; sampled
# 0.6-1.3/2.6-3.7/5.9-7.2/10.5-12.7 ms. Thresholds = interpolated crossing, rounded down.
# Since then channel_conv2d lost its im2col and global permute (docs/nenni.md, "Layer speed"): batch 128,
# 2 threads, 1/3/10/30% kept = 6-8/10-12/22-26/50-66% of the dense conv, so its crossing is now near 0.5;
# the threshold stays 0.30 (conservative) until it is re-measured with the protocol above.
# CUDA: NOT measured (no GPU in any session so far; the CUDA and Triton kernels exist, are tested under
# the Triton interpreter / compile-checked for sm_80 and sm_90, but were never timed): conservative
# estimates, to be replaced by `python benchmarks/run.py --ops sampled` on a GPU.
SAMPLED_THRESHOLDS = {
    "cpu": {"linear": 0.20, "conv2d": 0.12, "channel_conv2d": 0.30},
    "cuda": {"linear": 0.10, "conv2d": 0.10, "channel_conv2d": 0.30},
}
KINDS = ("linear", "conv2d", "channel_conv2d")


def sampled_is_faster(keep_fraction: float, kind: str, device: Union[str, torch.device]) -> bool:
    """Whether the sampled kernel of `kind` beats the dense product + blend at this keep fraction.

    keep_fraction = 1 - r (r: NENNI's noise-injection ratio), in [0, 1]. kind: "linear", "conv2d"
    (position granularity) or "channel_conv2d". Thresholds: `SAMPLED_THRESHOLDS` (measured, see there).
    """
    keep_fraction = _checks.number("keep_fraction", keep_fraction, lo=0.0, hi=1.0)
    _checks.choice("kind", kind, KINDS)
    dev = _checks.device("device", device).type
    if dev not in SAMPLED_THRESHOLDS:
        raise ValueError(f"device must be a cpu or cuda device, got {device!r}")
    return keep_fraction < SAMPLED_THRESHOLDS[dev][kind]


# ---- validation ------------------------------------------------------------------------------------

def _check_bias(bias: Optional[torch.Tensor], x: torch.Tensor, n: int) -> None:
    if bias is None:
        return
    _checks.like("bias", bias, "x", x, shape=False)
    if tuple(bias.shape) != (n,):
        raise ValueError(f"bias must have shape ({n},) (one value per output channel), got {tuple(bias.shape)}")


def _check_mask(name: str, mask: object, x: torch.Tensor, shape: tuple) -> torch.Tensor:
    mask = _checks.tensor(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    _checks.same_device(name, mask, "x", x)
    return mask


def _conv_args(x, weight, bias, stride, padding, dilation, groups):
    x = _checks.floating("x", x)
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    weight = _checks.like("weight", weight, "x", x, shape=False)
    stride, padding, dilation = (list(_conv.pair("stride", stride, 1)), list(_conv.pair("padding", padding, 0)),
                                 list(_conv.pair("dilation", dilation, 1)))
    groups = _checks.integer("groups", groups, lo=1)
    B, C, H, W = x.shape
    if C % groups:
        raise ValueError(f"groups must divide the input channels C={C}, got groups={groups}")
    if weight.dim() != 4 or weight.shape[1] * groups != C:
        raise ValueError(f"weight must have shape [n, C/groups={C // groups}, kh, kw], got {tuple(weight.shape)}")
    n, _, kh, kw = weight.shape
    if n % groups:
        raise ValueError(f"groups must divide the output channels n={n}, got groups={groups}")
    _check_bias(bias, x, n)
    ho = _conv.out_size(H, kh, stride[0], padding[0], dilation[0])
    wo = _conv.out_size(W, kw, stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"x spatial size {H}x{W} is too small for kernel {kh}x{kw} with padding {padding} and "
                         f"dilation {dilation}: output would be {ho}x{wo} (expected >= 1x1)")
    return x, weight, stride, padding, dilation, groups, (B, n, ho, wo)


# ---- sampled_linear -----------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::sampled_linear", mutates_args=())
def _sampled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor,
                    backend: str) -> torch.Tensor:
    return kernel("sampled", "sampled_linear", backend)(x, weight, bias, mask)


@_sampled_linear.register_fake
def _(x, weight, bias, mask, backend):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("fastnoise::sampled_linear_backward", mutates_args=())
def _sampled_linear_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                             backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(kernel("sampled", "sampled_linear_backward", backend)(grad, x, weight, mask))


@_sampled_linear_backward.register_fake
def _(grad, x, weight, mask, backend):
    return torch.empty_like(x), torch.empty_like(weight), weight.new_empty(weight.shape[0])


def _linear_setup(ctx, inputs, output):
    x, weight, bias, mask, backend = inputs
    ctx.save_for_backward(x, weight, mask)
    ctx.has_bias = bias is not None
    ctx.backend = backend


def _linear_backward(ctx, grad):
    x, weight, mask = ctx.saved_tensors
    gx, gw, gb = _sampled_linear_backward(grad.contiguous(), x, weight, mask, ctx.backend)
    return gx, gw, (gb if ctx.has_bias else None), None, None


_sampled_linear.register_autograd(_linear_backward, setup_context=_linear_setup)


def sampled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor, *,
                   backend: Optional[str] = None) -> torch.Tensor:
    """Exact linear outputs where `mask` is True, 0 elsewhere.

    ``out[..., j] = x[...] . weight[j] + bias[j]`` if ``mask[..., j]`` else 0.

    Args:
        x: ``[..., K]`` floating.
        weight: ``[n, K]``, dtype and device of x.
        bias: ``[n]`` or None.
        mask: ``[..., n]`` bool (the leading dims of x).
        backend: "reference", "cpu", "triton", "cuda" or None (the current / default backend).
    Returns:
        ``[..., n]`` in the dtype of x. Differentiable w.r.t. x, weight and bias.
    """
    x = _checks.floating("x", x)
    if x.dim() < 1:
        raise ValueError(f"x must have at least 1 dimension [..., K], got a 0-d tensor")
    weight = _checks.like("weight", weight, "x", x, shape=False)
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(f"weight must have shape [n, K={x.shape[-1]}], got {tuple(weight.shape)}")
    n = weight.shape[0]
    _check_bias(bias, x, n)
    lead = tuple(x.shape[:-1])
    mask = _check_mask("mask", mask, x, lead + (n,))
    b = _backend.resolve(x.device, backend)
    rows = math.prod(lead)  # (not reshape(-1, K): ambiguous for K = 0 or n = 0)
    out = _sampled_linear(x.reshape(rows, x.shape[-1]), weight, bias, mask.reshape(rows, n), b)
    return out.reshape(lead + (n,))


# ---- convolutions -------------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::sampled_conv2d", mutates_args=())
def _sampled_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor,
                    stride: list[int], padding: list[int], dilation: list[int], groups: int,
                    backend: str) -> torch.Tensor:
    return kernel("sampled", "sampled_conv2d", backend)(x, weight, bias, mask, stride, padding, dilation, groups)


@_sampled_conv2d.register_fake
def _(x, weight, bias, mask, stride, padding, dilation, groups, backend):
    return x.new_empty(mask.shape)


@torch.library.custom_op("fastnoise::channel_conv2d", mutates_args=())
def _channel_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], keep: torch.Tensor,
                    stride: list[int], padding: list[int], dilation: list[int], groups: int,
                    backend: str) -> torch.Tensor:
    return kernel("sampled", "channel_conv2d", backend)(x, weight, bias, keep, stride, padding, dilation, groups)


def _conv_out_shape(x, weight, stride, padding, dilation):
    ho = _conv.out_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    wo = _conv.out_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    return (x.shape[0], weight.shape[0], ho, wo)


@_channel_conv2d.register_fake
def _(x, weight, bias, keep, stride, padding, dilation, groups, backend):
    return x.new_empty(_conv_out_shape(x, weight, stride, padding, dilation))


@torch.library.custom_op("fastnoise::sampled_conv2d_backward", mutates_args=())
def _sampled_conv2d_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                             stride: list[int], padding: list[int], dilation: list[int], groups: int,
                             backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(kernel("sampled", "sampled_conv2d_backward", backend)(grad, x, weight, mask, stride, padding,
                                                                        dilation, groups))


@_sampled_conv2d_backward.register_fake
def _(grad, x, weight, mask, stride, padding, dilation, groups, backend):
    return torch.empty_like(x), torch.empty_like(weight), weight.new_empty(weight.shape[0])


def _conv_setup(ctx, inputs, output):
    x, weight, bias, mask, stride, padding, dilation, groups, backend = inputs
    ctx.save_for_backward(x, weight, mask)
    ctx.args = (stride, padding, dilation, groups, backend)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad):
    x, weight, mask = ctx.saved_tensors
    if mask.dim() == 2:  # channel keep [B, n] -> [B, n, 1, 1] (broadcast over positions)
        mask = mask[:, :, None, None]
    gx, gw, gb = _sampled_conv2d_backward(grad.contiguous(), x, weight, mask, *ctx.args)
    return gx, gw, (gb if ctx.has_bias else None), None, None, None, None, None, None


_sampled_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)
_channel_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)


def sampled_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor, *,
                   stride: _Pair = 1, padding: _Pair = 0, dilation: _Pair = 1, groups: int = 1,
                   backend: Optional[str] = None) -> torch.Tensor:
    """Exact conv outputs where `mask` is True ("position" granularity), 0 elsewhere.

    ``out = where(mask, conv2d(x, weight, bias, stride, padding, dilation, groups), 0)``, but only
    the selected outputs are computed (per output position, the dot products of its selected channels).

    Args:
        x: ``[B, C, H, W]`` floating.
        weight: ``[n, C/groups, kh, kw]``; bias ``[n]`` or None.
        mask: ``[B, n, H', W']`` bool, the output shape of the conv.
        stride, padding, dilation: int or pair; groups: int dividing C and n.
    Returns:
        ``[B, n, H', W']`` in the dtype of x. Differentiable w.r.t. x, weight and bias.
    """
    x, weight, stride, padding, dilation, groups, out_shape = _conv_args(x, weight, bias, stride, padding,
                                                                         dilation, groups)
    mask = _check_mask("mask", mask, x, out_shape)
    b = _backend.resolve(x.device, backend)
    return _sampled_conv2d(x, weight, bias, mask, stride, padding, dilation, groups, b)


def channel_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], keep: torch.Tensor, *,
                   stride: _Pair = 1, padding: _Pair = 0, dilation: _Pair = 1, groups: int = 1,
                   backend: Optional[str] = None) -> torch.Tensor:
    """Exact conv outputs of the kept (sample, channel) pairs ("channel" granularity), 0 elsewhere.

    ``out[b, j] = conv2d(x, weight, bias, ...)[b, j]`` if ``keep[b, j]`` else 0, computed as a dense
    conv over each sample's kept channels only.

    Args:
        x: ``[B, C, H, W]`` floating.
        weight: ``[n, C/groups, kh, kw]``; bias ``[n]`` or None.
        keep: ``[B, n]`` bool.
        stride, padding, dilation: int or pair; groups: int dividing C and n.
    Returns:
        ``[B, n, H', W']`` in the dtype of x. Differentiable w.r.t. x, weight and bias.
    """
    x, weight, stride, padding, dilation, groups, out_shape = _conv_args(x, weight, bias, stride, padding,
                                                                         dilation, groups)
    keep = _check_mask("keep", keep, x, out_shape[:2])
    b = _backend.resolve(x.device, backend)
    return _channel_conv2d(x, weight, bias, keep, stride, padding, dilation, groups, b)


def _channel_conv2d_into(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], keep: torch.Tensor,
                         out: torch.Tensor, *, stride: _Pair = 1, padding: _Pair = 0, dilation: _Pair = 1,
                         groups: int = 1, backend: Optional[str] = None) -> torch.Tensor:
    """Inference helper of NENNI's channel granularity (no autograd, not for tracing): writes
    `channel_conv2d`'s kept planes into `out` in place, ``out[b, j] = conv2d(x, ...)[b, j]`` where
    ``keep[b, j]``, and leaves the other planes of `out` as they are; returns `out`. The CPU kernel writes
    straight into out (no full-size output, no zero fill, no scatter; design note 59); the other backends run
    the reference. `out`: ``[B, n, H', W']`` of x's dtype and device, not overlapping x, weight or bias.
    """
    x, weight, stride, padding, dilation, groups, out_shape = _conv_args(x, weight, bias, stride, padding,
                                                                         dilation, groups)
    keep = _check_mask("keep", keep, x, out_shape[:2])
    out = _checks.like("out", out, "x", x, shape=False)
    if tuple(out.shape) != tuple(out_shape):
        raise ValueError(f"out must have shape {tuple(out_shape)}, got {tuple(out.shape)}")
    b = _backend.resolve(x.device, backend)
    kernel("sampled", "channel_conv2d_into", b)(x, weight, bias, keep, out, stride, padding, dilation, groups)
    return out
