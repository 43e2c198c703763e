"""Index code of the implicit-im2col conv GEMM tiles shared by triton_kernels/sampled.py and noise_conv.py.

Rows of a tile are output positions ``(b, oh, ow)`` with ``l = oh * Wo + ow``, columns output channels
``n`` of one group ``grp``, the reduction runs over ``k = (c, ki, kj)`` of the group's ``Cg * KH * KW``
inputs (k = c * KH * KW + ki * KW + kj, the weight's [Cg, kh, kw] order):

    x tap of (row, k) = x[b, grp * Cg + c, oh * sh - ph + ki * dh, ow * sw - pw + kj * dw]   (0 in the padding)

These are @triton.jit functions: Triton inlines them into the calling kernel (no call, the same code as
written in place), so the kernels keep their loops and only the index arithmetic lives here once.
"""
from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl


@triton.jit
def conv_rows(l, b, grp, Wo, sh, sw, ph, pw, Cg, sxb, sxc):
    """Per row: the first input tap (ih0, iw0) of output position l and the x offset of (b, channel grp * Cg)."""
    oh = l // Wo
    ow = l % Wo
    return oh * sh - ph, ow * sw - pw, b * sxb + grp * Cg * sxc


@triton.jit
def patch_chunk(x_ptr, x_row, ih0, iw0, rvalid, k, H, W, sxc, sxh, sxw, dh, dw,
                Kg: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr):
    """The [BLOCK_M, BLOCK_K] im2col chunk of x for the reduction indices k (a vector of BLOCK_K).

    Returns (a, a_ok, c, ki, kj, ih, iw, kvalid): the loaded taps (0 where a_ok is False: padding, rows
    past the end, k >= Kg), and the indices the callers reuse (input noise, the weight chunk)."""
    kvalid = k < Kg
    c = k // (KH * KW)
    ki = (k // KW) % KH
    kj = k % KW
    ih = ih0[:, None] + (ki * dh)[None, :]
    iw = iw0[:, None] + (kj * dw)[None, :]
    a_ok = rvalid[:, None] & kvalid[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    a = tl.load(x_ptr + x_row[:, None] + (c * sxc)[None, :] + ih * sxh + iw * sxw, mask=a_ok, other=0.0)
    return a, a_ok, c, ki, kj, ih, iw, kvalid


@triton.jit
def weight_chunk(w_ptr, w_col, c, ki, kj, kvalid, cvalid, swc, swh, sww):
    """The [BLOCK_K, BLOCK_N] chunk of W[n, c, ki, kj] (w_col = n * swn per column), 0 past Kg / Ng."""
    w_off = w_col[None, :] + (c * swc + ki * swh + kj * sww)[:, None]
    return tl.load(w_ptr + w_off, mask=kvalid[:, None] & cvalid[None, :], other=0.0)


@triton.jit
def tile_columns(pid_n, n_tiles_n, Ng, BLOCK_N: tl.constexpr):
    """Columns of program pid_n (grid axis 1 = groups x column tiles): (grp, j = column within the group,
    cvalid = j < Ng, n = grp * Ng + j the output channel)."""
    grp = pid_n // n_tiles_n
    j = (pid_n % n_tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    return grp, j, j < Ng, grp * Ng + j


@triton.jit
def flat_rows(pid_m, B, L, BLOCK_M: tl.constexpr):
    """Rows of program pid_m over the flattened (sample, position) rows: (rvalid, b, l)."""
    r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    return r < B * L, r // L, r % L


@triton.jit
def dot_chunk(a, wt, acc, CAST: tl.constexpr, ACC: tl.constexpr):
    """acc + a @ wt accumulated in ACC (float32; float64 for float64) at "ieee" precision (never tf32); CAST:
    the operands are cast to ACC first (the interpreter's bfloat16, triton_kernels/sampled.py `_launch`)."""
    if CAST:
        a = a.to(ACC)
        wt = wt.to(ACC)
    return tl.dot(a, wt, acc, input_precision="ieee", out_dtype=ACC)


@triton.jit
def add_bias(acc, b_ptr, n, cvalid, ACC: tl.constexpr):
    """acc + bias[n] per column."""
    return acc + tl.load(b_ptr + n, mask=cvalid, other=0.0).to(ACC)[None, :]


# ---- host side: the launch configuration of the two implicit-GEMM kernels ------------------------------------

def gemm_blocks(on_gpu: bool, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K): 32 x 32 x 32 in the interpreter (few, large programs); on a GPU 64 x 64 x 32,
    or 32 x 32 x 16 for float64."""
    if not on_gpu:
        return 32, 32, 32
    if dtype == torch.float64:
        return 32, 32, 16
    return 64, 64, 32


_TORCH_DTYPE = {"fp32": torch.float32, "fp64": torch.float64, "fp16": torch.float16, "bf16": torch.bfloat16}


def gpu_launch_args(args: dict, cast: Callable[[bool, torch.dtype], bool]) -> dict:
    """The arguments an implicit-GEMM kernel takes on a GPU for a call recorded in the interpreter
    (tools/triton_compile_check.py's format: name -> [kind, value]): the GPU's block sizes, ``cast(True, dtype)``
    for CAST, and the output in the input's dtype (the interpreter's bfloat16 runs are emulated in float32)."""
    dtype = args["x_ptr"][1]
    bm, bn, bk = gemm_blocks(True, _TORCH_DTYPE[dtype])
    out = dict(args)
    out.update(BLOCK_M=["value", bm], BLOCK_N=["value", bn], BLOCK_K=["value", bk],
               CAST=["value", cast(True, _TORCH_DTYPE[dtype])], out_ptr=["ptr", dtype])
    return out
