"""Eager PyTorch reference of the NENNI sparse ternary projection family (dense P, F.unfold for conv).

Kernel signatures (the same in csrc/register.cpp, fastnoise/triton_kernels/ternary_projection.py):
  ternary_generate(state, k, d) -> int32 [2, k, ceil(d/32)]         packed P (plus / minus bitmasks)
  ternary_project(x [N, d], packed, scale) -> [N, k]                  scale * x P^T
  ternary_project_t(g [N, k], packed, d, scale) -> [N, d]             scale * g P   (the transpose)
  ternary_conv_project(x [B, C, H, W], packed, scale, kh, kw, sh, sw, ph, pw, dh, dw, groups)
      -> [B, groups*k, H', W']                                        P on the im2col patches of each group
  ternary_conv_epilogue(y [B, groups*k, H', W'], w [n, k], b [n] or None, groups)
      -> [B, n, H', W']                                               the grouped 1x1 map W~ y + b~

The generation rule (see fastnoise/ops/ternary_projection.py): entry (p, q) of P uses the raw word of
element g = offset + p*d + q of the Philox stream of `seed`; with t = raw >> 8 (24 bits):
+1 if t < T_PLUS, -1 if T_PLUS <= t < T_MINUS, else 0.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .rng import raw_np

# 24-bit thresholds: P(+1) = P(-1) = 2796203 / 2**24 (1/6 + 2e-8), P(0) = 11184810 / 2**24
T_PLUS = 2796203
T_MINUS = 5592406


def words(d: int) -> int:
    """int32 words per packed row: ceil(d / 32)."""
    return (d + 31) // 32


def signs_from_raw(raw: np.ndarray) -> np.ndarray:
    """The ternary value (int8 in {-1, 0, +1}) of each raw 32-bit word."""
    t = raw >> np.uint64(8)
    return np.where(t < T_PLUS, 1, np.where(t < T_MINUS, -1, 0)).astype(np.int8)


def pack(signs: torch.Tensor) -> torch.Tensor:
    """int8 [k, d] in {-1, 0, 1} -> int32 [2, k, ceil(d/32)]: bit (q % 32) of word q // 32 of row p."""
    k, d = signs.shape
    w = words(d)
    planes = torch.stack([signs == 1, signs == -1]).to(torch.int64)  # [2, k, d]
    planes = F.pad(planes, (0, w * 32 - d)).view(2, k, w, 32)
    shifts = torch.arange(32, dtype=torch.int64, device=signs.device)
    packed = (planes << shifts).sum(-1)  # in [0, 2**32)
    packed = torch.where(packed >= 2 ** 31, packed - 2 ** 32, packed)  # two's complement int32
    return packed.to(torch.int32)


def unpack(packed: torch.Tensor, d: int) -> torch.Tensor:
    """int32 [2, k, ceil(d/32)] -> int8 [k, d] in {-1, 0, 1}."""
    shifts = torch.arange(32, dtype=torch.int64, device=packed.device)
    bits = (packed.to(torch.int64).unsqueeze(-1) >> shifts) & 1  # [2, k, w, 32]
    bits = bits.flatten(-2)[..., :d]
    return (bits[0] - bits[1]).to(torch.int8)


def dense(packed: torch.Tensor, d: int, scale: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The dense float P = scale * signs, [k, d] (tests and reference only)."""
    return unpack(packed, d).to(dtype) * scale


def ternary_generate(state: torch.Tensor, k: int, d: int) -> torch.Tensor:
    seed, offset = (int(v) for v in state.tolist())
    raw = raw_np(seed, offset, k * d)
    signs = torch.from_numpy(signs_from_raw(raw).reshape(k, d))
    return pack(signs).to(state.device)


def signed_sum(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``y[..., i] = sum_{q: p[i, q] = +1} x[..., q] - sum_{q: p[i, q] = -1} x[..., q]`` for p [k, d] in {-1, 0, +1}
    (float): ``x @ p.T`` where a zero of p contributes nothing, also when x is NaN or inf there.

    That is what the kernels compute (additions over the set bits only: issue 16's fuzz found the dense
    ``x @ P.T`` giving NaN for ``0 * inf`` where every backend gives the sum). Non-finite x are rare, so the
    finite case is one GEMM; otherwise the IEEE result of the sparse sum (+inf and -inf together: NaN) is
    rebuilt from counts of the non-finite entries each output meets."""
    finite = torch.isfinite(x)
    if x.numel() == 0 or bool(finite.all()):
        return x @ p.t()
    y = torch.where(finite, x, torch.zeros_like(x)) @ p.t()
    pos, neg = (p > 0).float(), (p < 0).float()
    nan, pinf, ninf = torch.isnan(x).float(), (x == float("inf")).float(), (x == -float("inf")).float()
    up = pinf @ pos.t() + ninf @ neg.t()      # +inf terms met by each output
    down = pinf @ neg.t() + ninf @ pos.t()    # -inf terms
    bad = (nan @ (pos + neg).t() > 0) | ((up > 0) & (down > 0))
    y = torch.where(up > 0, torch.full_like(y, float("inf")), y)
    y = torch.where(down > 0, torch.full_like(y, -float("inf")), y)
    return torch.where(bad, torch.full_like(y, float("nan")), y)


def ternary_project(x: torch.Tensor, packed: torch.Tensor, scale: float) -> torch.Tensor:
    p = unpack(packed, x.shape[-1]).to(x.dtype)
    return signed_sum(x, p) * scale


def ternary_project_t(g: torch.Tensor, packed: torch.Tensor, d: int, scale: float) -> torch.Tensor:
    p = unpack(packed, d).to(g.dtype)
    return signed_sum(g, p.t()) * scale


def conv_out_size(size: int, k: int, s: int, p: int, dil: int) -> int:
    return (size + 2 * p - dil * (k - 1) - 1) // s + 1


def conv_project_dense(x: torch.Tensor, p: torch.Tensor, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                       dh: int, dw: int, groups: int, *, sparse: bool = False) -> torch.Tensor:
    """P (dense [k, d], scale included) on the im2col patches of each group: [B, groups*k, H', W'].
    `sparse`: zeros of P skip non-finite patch entries (`signed_sum`, the kernels' semantics; p in {-1, 0, 1})."""
    b, c, h, w = x.shape
    ho, wo = conv_out_size(h, kh, sh, ph, dh), conv_out_size(w, kw, sw, pw, dw)
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # [B, C*kh*kw, L]
    cols = cols.view(b, groups, c // groups * kh * kw, ho * wo)  # [B, G, d, L]
    if sparse:
        y = signed_sum(cols.transpose(-1, -2), p.to(x.dtype)).transpose(-1, -2)  # [B, G, k, L]
    else:
        y = torch.matmul(p.to(x.dtype), cols)  # [B, G, k, L]
    return y.reshape(b, groups * p.shape[0], ho, wo)


def ternary_conv_project(x: torch.Tensor, packed: torch.Tensor, scale: float, kh: int, kw: int, sh: int, sw: int,
                         ph: int, pw: int, dh: int, dw: int, groups: int) -> torch.Tensor:
    d = x.shape[1] // groups * kh * kw
    p = unpack(packed, d).to(x.dtype)
    return conv_project_dense(x, p, kh, kw, sh, sw, ph, pw, dh, dw, groups, sparse=True) * scale


def ternary_conv_epilogue(y: torch.Tensor, w: torch.Tensor, b, groups: int) -> torch.Tensor:
    """z = W~_g y_g + b~_g per group: the grouped 1x1 map of the conv approximation as a batched GEMM
    ([G, m, k] @ [B, G, k, L] -> [B, G, m, L]); on CPU tensors with groups = 1 and a bias, the bias is the
    GEMM's C input (baddbmm, beta = 1). w is float [n, k] (INT4 scales already folded in). This is also
    the implementation the triton and cuda backends use (cuBLAS; see the dispatch table)."""
    bsz, _, ho, wo = y.shape
    n, k = w.shape
    if groups == 1 and b is not None and y.device.type == "cpu":
        z = torch.baddbmm(b.view(1, n, 1), w.expand(bsz, n, k), y.reshape(bsz, k, ho * wo))
        return z.view(bsz, n, ho, wo)
    if groups == 1:
        z = torch.matmul(w, y.reshape(bsz, k, ho * wo))
    else:
        z = torch.matmul(w.view(groups, n // groups, k), y.reshape(bsz, groups, k, ho * wo))
    z = z.view(bsz, n, ho, wo)
    if b is not None:
        z.add_(b.view(1, -1, 1, 1))  # z is fresh
    return z


def ternary_conv_epilogue_pooled(y: torch.Tensor, w: torch.Tensor, b, groups: int,
                                 signed_score: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, score): z = `ternary_conv_epilogue` and the pooled channel score of NENNI's channel granularity,
    score [B, n] = mean over the output positions of |z| (of z when signed_score). Also the triton and cuda
    implementation (dispatch table); the CPU kernel sums each row while it is in cache."""
    z = ternary_conv_epilogue(y, w, b, groups)
    return z, (z if signed_score else z.abs()).mean(dim=(2, 3))


def conv_approx_dense(x: torch.Tensor, p: torch.Tensor, w: torch.Tensor, b, kh: int, kw: int, sh: int, sw: int,
                      ph: int, pw: int, dh: int, dw: int, groups: int) -> torch.Tensor:
    """Eager z~ = W~ (P patches) + b~ with a dense, scaled P [k, d]: the benchmark baseline."""
    y = conv_project_dense(x, p, kh, kw, sh, sw, ph, pw, dh, dw, groups)
    return F.conv2d(y, w.reshape(w.shape[0], -1, 1, 1), b, groups=groups)


def linear_approx_dense(x: torch.Tensor, p: torch.Tensor, w: torch.Tensor, b) -> torch.Tensor:
    """Eager z~ = W~ P x + b~ with a dense, scaled P [k, d]."""
    return F.linear(x @ p.to(x.dtype).t(), w, b)
