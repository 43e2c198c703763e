"""Conv geometry shared by the conv ops (sampled products, ternary projection): argument pairs, output
size, and the col2im transpose of an im2col patch map (the C++ / CUDA side: csrc/common/conv_geom.h)."""
from __future__ import annotations

from typing import Sequence, Union

import torch

from .. import _checks
from ..reference.ternary_projection import conv_out_size

__all__ = ["pair", "out_size", "col2im", "IntPair"]

IntPair = Union[int, Sequence[int]]


def pair(name: str, v: IntPair, lo: int) -> tuple[int, int]:
    """(h, w) from an int or a pair of ints, each an int >= `lo` (errors name the argument)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        return tuple(_checks.integer(name, int(e) if isinstance(e, torch.SymInt) else e, lo=lo) for e in v)
    v = _checks.integer(name, v, lo=lo)
    return (v, v)


def out_size(size: int, k: int, s: int, p: int, dil: int) -> int:
    """Output length of a conv along one axis, as nn.Conv2d: (size + 2p - dil (k - 1) - 1) // s + 1."""
    return conv_out_size(size, k, s, p, dil)


def col2im(cols: torch.Tensor, in_shape, conv: tuple) -> torch.Tensor:
    """F.fold as kh*kw strided slice-adds: cols [B, C*kh*kw, H'*W'] -> [B, C, H, W] (conv = (kh, kw, sh, sw,
    ph, pw, dh, dw, groups)). (Inductor's fold lowering in torch 2.13 is wrong for a non-contiguous input
    with dilation > 1, and `.contiguous()` does not survive its fusion.)"""
    kh, kw, sh, sw, ph, pw, dh, dw, _ = conv
    b, c, h, w = in_shape
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    cols = cols.reshape(b, c, kh, kw, ho, wo)
    out = cols.new_zeros((b, c, h + 2 * ph, w + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw] += cols[:, :, i, j]
    return out[:, :, ph: ph + h, pw: pw + w]
