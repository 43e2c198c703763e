"""Triton kernels of the sampled exact products (kernel signatures as csrc/register.cpp, family "sampled").

All three forwards are one implicit-im2col GEMM over a conv geometry (a linear layer is the conv with
H = W = kh = kw = 1): rows are output positions ``(b, oh, ow)``, columns the output channels of one
group, the reduction runs over ``k = (c, ki, kj)`` of the group's ``Cg * kh * kw`` inputs:

    out[b, n, oh, ow] = sum_k x[b, g*Cg + c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw] * W[n, c, ki, kj] + bias[n]

where the output is selected, 0 elsewhere. One program owns a BLOCK_M x BLOCK_N output tile:

* position granularity (sampled_linear, sampled_conv2d): the tile's mask is loaded first; a tile with
  nothing selected stores zeros and skips the reduction (early exit), otherwise tl.dot over BLOCK_K
  chunks, then ``where(mask, acc + bias, 0)``. Rows of a tile may span samples (linear: L = 1);
* channel granularity (channel_conv2d): tiles never span samples; columns index each (sample, group)'s
  channels with the kept ones first (a stable sort of ``keep``, done on the device by torch), so
  the tiles past the kept count are all-dropped and exit early: the work is a dense GEMM on the kept
  channels only.

x, weight and mask are read through their strides (non-contiguous / channels-last inputs need no
copy). Products accumulate in float32 (float64 for float64 inputs; fp32 operands at "ieee"
precision, never tf32); half / bfloat16 results are rounded once. The backward is the dense one on
masked gradients (fastnoise.reference.sampled), shared with every other backend.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from fastnoise import _checks
from fastnoise.ops.sampled import _check_bias, _check_mask, _conv_args
from fastnoise.reference.sampled import sampled_conv2d_backward, sampled_linear_backward

from ._conv_tile import (add_bias, conv_rows, dot_chunk, flat_rows, gemm_blocks, gpu_launch_args as _gpu_launch_args,
                         patch_chunk, tile_columns, weight_chunk)

__all__ = ["sampled_linear", "sampled_conv2d", "channel_conv2d", "sampled_linear_backward",
           "sampled_conv2d_backward"]


@triton.jit
def _sampled_gemm_kernel(
        x_ptr, w_ptr, b_ptr, m_ptr, perm_ptr, cnt_ptr, out_ptr,
        B, C, H, W, N, Ho, Wo, Cg, Ng, n_tiles_n, l_tiles,
        sxb, sxc, sxh, sxw, swn, swc, swh, sww, smb, smn, sml,
        sh, sw, ph, pw, dh, dw,
        Kg: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, CHANNEL: tl.constexpr, HAS_BIAS: tl.constexpr,
        CAST: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    grp, j, cvalid, n = tile_columns(pid_n, n_tiles_n, Ng, BLOCK_N)  # j: column within the group
    L = Ho * Wo
    if CHANNEL:  # tile = (sample, block of positions); columns through the kept-first permutation
        b_s = pid_m // l_tiles
        l = (pid_m % l_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
        rvalid = l < L
        b = tl.zeros_like(l) + b_s
        n_kept = tl.load(cnt_ptr + b_s * (N // Ng) + grp)
        ch = tl.load(perm_ptr + (b_s * N + grp * Ng) + j, mask=cvalid, other=0)
        n = grp * Ng + ch
        sel = rvalid[:, None] & (j < n_kept)[None, :]
        any_sel = (pid_n % n_tiles_n) * BLOCK_N < n_kept
    else:  # tile = block of flattened (sample, position) rows
        rvalid, b, l = flat_rows(pid_m, B, L, BLOCK_M)
        tile_ok = rvalid[:, None] & cvalid[None, :]
        m_off = b[:, None] * smb + n[None, :] * smn + l[:, None] * sml
        sel = (tl.load(m_ptr + m_off, mask=tile_ok, other=0) != 0) & tile_ok
        any_sel = tl.max(sel.to(tl.int32)) > 0
    ih0, iw0, x_row = conv_rows(l, b, grp, Wo, sh, sw, ph, pw, Cg, sxb, sxc)
    w_col = n * swn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    if any_sel:
        for k0 in range(0, Kg, BLOCK_K):
            a, _, c, ki, kj, _, _, kvalid = patch_chunk(x_ptr, x_row, ih0, iw0, rvalid, k0 + tl.arange(0, BLOCK_K),
                                                        H, W, sxc, sxh, sxw, dh, dw, Kg, KH, KW)
            wt = weight_chunk(w_ptr, w_col, c, ki, kj, kvalid, cvalid, swc, swh, sww)
            acc = dot_chunk(a, wt, acc, CAST, ACC)
        if HAS_BIAS:
            acc = add_bias(acc, b_ptr, n, cvalid, ACC)
    res = tl.where(sel, acc, tl.zeros_like(acc))
    o_off = (b * N * L + l)[:, None] + (n * L)[None, :]
    tl.store(out_ptr + o_off, res.to(out_ptr.dtype.element_ty), mask=rvalid[:, None] & cvalid[None, :])


def _cast(on_gpu: bool, dtype: torch.dtype) -> bool:
    """CAST of `_sampled_gemm_kernel`: bfloat16 operands to float32 in the interpreter only (`_launch`)."""
    return not on_gpu and dtype == torch.bfloat16


def gpu_launch_args(kernel: str, args: dict) -> dict:
    """The GPU's arguments for a launch recorded in the interpreter (tools/triton_compile_check.py)."""
    return _gpu_launch_args(args, _cast) if kernel == "_sampled_gemm_kernel" else args


def _launch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor,
            stride: list[int], padding: list[int], dilation: list[int], groups: int, channel: bool) -> torch.Tensor:
    """x [B, C, H, W], weight [N, C/groups, kh, kw], mask [B, N, Ho, Wo] (position) or keep [B, N] (channel)."""
    B, C, H, W = x.shape
    N, Cg, kh, kw = weight.shape
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    # The interpreter (CPU tensors) mishandles bfloat16: tl.dot multiplies its raw uint16 storage and
    # the float32 -> bfloat16 cast truncates. There, bfloat16 operands are cast to float32 in the kernel
    # and the result is stored in float32, then rounded (to nearest even) by torch.
    on_gpu = x.device.type == "cuda"
    emulate_bf16 = _cast(on_gpu, x.dtype)
    out = torch.empty((B, N, Ho, Wo), dtype=torch.float32 if emulate_bf16 else x.dtype, device=x.device)
    if out.numel() == 0:
        return out.to(x.dtype)
    Ng, L = N // groups, Ho * Wo
    Kg = Cg * kh * kw
    bm, bn, bk = gemm_blocks(on_gpu, x.dtype)
    n_tiles_n = triton.cdiv(Ng, bn)
    if channel:
        kg = mask.reshape(B, groups, Ng)
        # kept channels first, in index order (stable), and their count per (sample, group)
        perm = torch.argsort((~kg).to(torch.int8), dim=-1, stable=True).to(torch.int32).contiguous()
        cnt = kg.sum(-1, dtype=torch.int32).contiguous()
        l_tiles = triton.cdiv(L, bm)
        grid_m = B * l_tiles
        m_arg, ms = perm, (0, 0, 0)
    else:
        perm = cnt = None
        l_tiles = 1
        grid_m = triton.cdiv(B * L, bm)
        m_arg = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
        ms = (m_arg.stride(0), m_arg.stride(1), 0)
        if mask.dim() == 4:  # [B, N, Ho, Wo] read as [B, N, L = Ho * Wo] with one position stride
            if Wo == 1:
                ms = (m_arg.stride(0), m_arg.stride(1), m_arg.stride(2))
            else:
                if Ho > 1 and m_arg.stride(2) != Wo * m_arg.stride(3):
                    m_arg = m_arg.contiguous()
                ms = (m_arg.stride(0), m_arg.stride(1), m_arg.stride(3))
    acc = tl.float64 if x.dtype == torch.float64 else tl.float32
    grid = (grid_m, n_tiles_n * groups)
    _sampled_gemm_kernel[grid](
        x, weight, bias if bias is not None else x, m_arg, perm if channel else x, cnt if channel else x, out,
        B, C, H, W, N, Ho, Wo, Cg, Ng, n_tiles_n, l_tiles,
        *x.stride(), *weight.stride(), *ms,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        Kg=Kg, KH=kh, KW=kw, CHANNEL=channel, HAS_BIAS=bias is not None,
        CAST=emulate_bf16, ACC=acc, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    return out.to(x.dtype) if emulate_bf16 else out


def sampled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   mask: torch.Tensor) -> torch.Tensor:
    """x [R, K], weight [N, K], bias [N] or None, mask [R, N] bool -> [R, N]: x W^T + b where mask, else 0."""
    x = _checks.floating("x", x)
    weight = _checks.like("weight", weight, "x", x, shape=False)
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"sampled_linear: x [R, K] and weight [N, K] expected, got {tuple(x.shape)} and "
                         f"{tuple(weight.shape)}")
    R, N = x.shape[0], weight.shape[0]
    _check_bias(bias, x, N)
    mask = _check_mask("mask", mask, x, (R, N))
    out = _launch(x[:, :, None, None], weight[:, :, None, None], bias, mask, [1, 1], [0, 0], [1, 1], 1, False)
    return out.view(R, N)


def _conv(x, weight, bias, mask, stride, padding, dilation, groups, channel: bool) -> torch.Tensor:
    x, weight, stride, padding, dilation, groups, out_shape = _conv_args(x, weight, bias, stride, padding,
                                                                         dilation, groups)
    mask = _check_mask("keep" if channel else "mask", mask, x, out_shape[:2] if channel else out_shape)
    return _launch(x, weight, bias, mask, stride, padding, dilation, groups, channel)


def sampled_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], mask: torch.Tensor,
                   stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """x [B, C, H, W], weight [N, C/groups, kh, kw], mask [B, N, H', W'] bool -> conv where mask, else 0."""
    return _conv(x, weight, bias, mask, stride, padding, dilation, groups, channel=False)


def channel_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], keep: torch.Tensor,
                   stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """keep [B, N] bool -> [B, N, H', W']: the conv of kept (sample, channel) pairs, 0 for dropped ones."""
    return _conv(x, weight, bias, keep, stride, padding, dilation, groups, channel=True)
