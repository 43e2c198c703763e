"""Eager references of the sampled exact products (NENNI, seed 000): dense product, then mask.

This is the natural formulation and the benchmark baseline: it computes every output and throws the
unselected ones away, which is exactly the work the sampled kernels skip. Signatures follow the
kernel schemas in csrc/register.cpp (x and mask already flattened / validated by fastnoise.ops).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _zero_where_not(mask: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    # torch.where, not a product: unselected outputs are exactly 0 even when the dense value is inf/NaN
    return torch.where(mask, dense, torch.zeros((), dtype=dense.dtype, device=dense.device))


def sampled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   mask: torch.Tensor) -> torch.Tensor:
    """x [R, K], weight [N, K], bias [N] or None, mask [R, N] bool -> [R, N]."""
    return _zero_where_not(mask, F.linear(x, weight, bias))


def sampled_linear_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                            mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x [R, K], grad_weight [N, K], grad_bias [N]) from the selected outputs only."""
    g = _zero_where_not(mask, grad)
    return g @ weight, g.t() @ x, g.sum(0)


def _conv2d(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    """F.conv2d, also for n = 0 output channels (torch refuses an empty weight; the result is empty)."""
    if weight.shape[0] == 0:
        kh, kw = weight.shape[2:]
        ho = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        return x.new_zeros(x.shape[0], 0, ho, wo)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def sampled_conv2d(x, weight, bias, mask, stride: list[int], padding: list[int], dilation: list[int],
                   groups: int) -> torch.Tensor:
    """x [B, C, H, W], weight [n, C/groups, kh, kw], mask [B, n, H', W'] bool -> [B, n, H', W']."""
    return _zero_where_not(mask, _conv2d(x, weight, bias, stride, padding, dilation, groups))


def channel_conv2d(x, weight, bias, keep, stride: list[int], padding: list[int], dilation: list[int],
                   groups: int) -> torch.Tensor:
    """keep [B, n] bool: the conv for kept (sample, channel) pairs, 0 for the dropped ones."""
    return _zero_where_not(keep[:, :, None, None], _conv2d(x, weight, bias, stride, padding, dilation, groups))


def channel_conv2d_into(x, weight, bias, keep, out, stride: list[int], padding: list[int], dilation: list[int],
                        groups: int) -> None:
    """In place: out[b, j] = conv2d(x)[b, j] where keep[b, j]; the other planes of out keep their values.
    Also the triton and cuda implementation (dispatch table)."""
    z = _conv2d(x, weight, bias, stride, padding, dilation, groups)
    out.copy_(torch.where(keep[:, :, None, None], z, out))


def sampled_conv2d_backward(grad, x, weight, mask, stride: list[int], padding: list[int], dilation: list[int],
                            groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of both conv ops; mask [B, n, H', W'] (position) or [B, n, 1, 1] (channel keep)."""
    g = _zero_where_not(mask, grad)
    if g.numel() == 0 or x.numel() == 0 or weight.shape[0] == 0:
        return torch.zeros_like(x), torch.zeros_like(weight), g.new_zeros(weight.shape[0])
    gx, gw, gb = torch.ops.aten.convolution_backward(g, x, weight, [weight.shape[0]], stride, padding, dilation,
                                                     False, [0, 0], groups, [True, True, True])
    return gx, gw, gb
