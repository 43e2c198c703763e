"""Triton kernels of the sparse ternary projection (kernel signatures as csrc/register.cpp).

Packed P: int32 [2, k, W], W = ceil(d/32), plane 0 the +1 bitmask, plane 1 the -1 bitmask; entry q of
row p is bit q % 32 of word q // 32 (see csrc/ternary_projection/ternary.h). Generation: element
g = offset + p*d + q of the Philox stream, t = raw >> 8: +1 if t < T_PLUS, -1 if t < T_MINUS, else 0.
Loop bounds (W, or k for the transpose) are constexpr: one compilation per layer shape.
Projections are signed sums (tl.where on the bits, no multiplications by P), accumulated in float32
(float64 for float64 inputs), then one multiplication by `scale`.
"""
import torch
import triton
import triton.language as tl

from .philox import load_state, raw_at

T_PLUS = tl.constexpr(2796203)
T_MINUS = tl.constexpr(5592406)


@triton.jit
def _generate_kernel(out_ptr, state_ptr, k, d, W, BLOCK_W: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    w = tl.program_id(1).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = w < W
    seed_lo, seed_hi, offset = load_state(state_ptr)
    plus = tl.zeros([BLOCK_W], dtype=tl.uint32)
    minus = tl.zeros([BLOCK_W], dtype=tl.uint32)
    for b in tl.static_range(32):
        q = w * 32 + b
        valid = q < d
        t = raw_at(seed_lo, seed_hi, offset + p * d + q) >> 8
        is_p = valid & (t < T_PLUS)
        is_m = valid & (t >= T_PLUS) & (t < T_MINUS)
        plus = plus | (is_p.to(tl.uint32) << b)
        minus = minus | (is_m.to(tl.uint32) << b)
    tl.store(out_ptr + p * W + w, plus.to(tl.int32, bitcast=True), mask=mask)
    tl.store(out_ptr + k * W + p * W + w, minus.to(tl.int32, bitcast=True), mask=mask)


def ternary_generate(state: torch.Tensor, k: int, d: int, block_w: int = 16) -> torch.Tensor:
    W = (d + 31) // 32
    out = torch.empty((2, k, W), dtype=torch.int32, device=state.device)
    _generate_kernel[(k, triton.cdiv(W, block_w))](out, state, k, d, W, BLOCK_W=block_w)
    return out


@triton.jit
def _signed(pw, mw, b, v):
    """+v where bit b of the plus words is set, -v where bit b of the minus words is set, else 0."""
    zero = tl.zeros_like(v)
    return tl.where(((pw >> b) & 1) != 0, v, tl.where(((mw >> b) & 1) != 0, -v, zero))


@triton.jit
def _project_kernel(x_ptr, p_ptr, y_ptr, N, d, k, W: tl.constexpr, scale, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    rmask = rows < N
    cmask = cols < k
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=ACC)
    for w in range(W):
        pw = tl.load(p_ptr + cols * W + w, mask=cmask, other=0).to(tl.uint32, bitcast=True)
        mw = tl.load(p_ptr + k * W + cols * W + w, mask=cmask, other=0).to(tl.uint32, bitcast=True)
        for b in tl.static_range(32):
            q = w * 32 + b
            xv = tl.load(x_ptr + rows * d + q, mask=rmask & (q < d), other=0.0).to(ACC)
            acc += _signed(pw[None, :], mw[None, :], b, tl.broadcast_to(xv[:, None], [BLOCK_N, BLOCK_K]))
    out = acc * scale
    tl.store(y_ptr + rows[:, None] * k + cols[None, :], out.to(y_ptr.dtype.element_ty),
             mask=rmask[:, None] & cmask[None, :])


def _acc(t: torch.Tensor):
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def ternary_project(x: torch.Tensor, packed: torch.Tensor, scale: float, block_n: int = 16,
                    block_k: int = 16) -> torch.Tensor:
    x = x.contiguous()
    packed = packed.contiguous()
    N, d = x.shape
    k, W = packed.shape[1], packed.shape[2]
    y = torch.empty((N, k), dtype=x.dtype, device=x.device)
    if N:
        _project_kernel[(triton.cdiv(N, block_n), triton.cdiv(k, block_k))](
            x, packed, y, N, d, k, W, scale, ACC=_acc(x), BLOCK_N=block_n, BLOCK_K=block_k)
    return y


@triton.jit
def _project_t_kernel(g_ptr, p_ptr, out_ptr, N, d, k: tl.constexpr, W, scale, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_Q: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    q = tl.program_id(1).to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rmask = rows < N
    qmask = q < d
    word = q // 32
    bit = q % 32
    acc = tl.zeros([BLOCK_N, BLOCK_Q], dtype=ACC)
    for p in range(k):
        gv = tl.load(g_ptr + rows * k + p, mask=rmask, other=0.0).to(ACC)
        pw = tl.load(p_ptr + p * W + word, mask=qmask, other=0).to(tl.uint32, bitcast=True) >> bit.to(tl.uint32)
        mw = tl.load(p_ptr + k * W + p * W + word, mask=qmask, other=0).to(tl.uint32, bitcast=True) >> bit.to(tl.uint32)
        acc += _signed(pw[None, :], mw[None, :], 0, tl.broadcast_to(gv[:, None], [BLOCK_N, BLOCK_Q]))
    out = acc * scale
    tl.store(out_ptr + rows[:, None] * d + q[None, :], out.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None] & qmask[None, :])


def ternary_project_t(g: torch.Tensor, packed: torch.Tensor, d: int, scale: float, block_n: int = 16,
                      block_q: int = 32) -> torch.Tensor:
    g = g.contiguous()
    packed = packed.contiguous()
    N, k = g.shape
    W = packed.shape[2]
    out = torch.empty((N, d), dtype=g.dtype, device=g.device)
    if N:
        _project_t_kernel[(triton.cdiv(N, block_n), triton.cdiv(d, block_q))](
            g, packed, out, N, d, k, W, scale, ACC=_acc(g), BLOCK_N=block_n, BLOCK_Q=block_q)
    return out


@triton.jit
def _conv_project_kernel(x_ptr, p_ptr, y_ptr, C, H, Wd, Ho, Wo, k, W: tl.constexpr, d, cg, groups, scale,
                         KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                         PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
                         ACC: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_K: tl.constexpr):
    bg = tl.program_id(0).to(tl.int64)  # b * groups + g
    cols = tl.program_id(1).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    lpos = tl.program_id(2).to(tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L)
    L = Ho * Wo
    lmask = lpos < L
    cmask = cols < k
    oh = lpos // Wo
    ow = lpos % Wo
    b = bg // groups
    g = bg % groups
    x_base = x_ptr + (b * C + g * cg) * H * Wd
    acc = tl.zeros([BLOCK_L, BLOCK_K], dtype=ACC)
    for w in range(W):
        pw = tl.load(p_ptr + cols * W + w, mask=cmask, other=0).to(tl.uint32, bitcast=True)
        mw = tl.load(p_ptr + k * W + cols * W + w, mask=cmask, other=0).to(tl.uint32, bitcast=True)
        for bit in tl.static_range(32):
            q = w * 32 + bit
            c = q // (KH * KW)
            ij = q % (KH * KW)
            ih = oh * SH - PH + (ij // KW) * DH
            iw = ow * SW - PW + (ij % KW) * DW
            m = lmask & (q < d) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < Wd)
            xv = tl.load(x_base + (c * H + ih) * Wd + iw, mask=m, other=0.0).to(ACC)
            acc += _signed(pw[None, :], mw[None, :], bit, tl.broadcast_to(xv[:, None], [BLOCK_L, BLOCK_K]))
    out = acc * scale
    y_off = (bg * k + cols[None, :]) * L + lpos[:, None]
    tl.store(y_ptr + y_off, out.to(y_ptr.dtype.element_ty), mask=lmask[:, None] & cmask[None, :])


def ternary_conv_project(x: torch.Tensor, packed: torch.Tensor, scale: float, kh: int, kw: int, sh: int, sw: int,
                         ph: int, pw: int, dh: int, dw: int, groups: int, block_l: int = 32,
                         block_k: int = 16) -> torch.Tensor:
    x = x.contiguous()
    packed = packed.contiguous()
    B, C, H, Wd = x.shape
    cg = C // groups
    d = cg * kh * kw
    k, W = packed.shape[1], packed.shape[2]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = torch.empty((B, groups * k, Ho, Wo), dtype=x.dtype, device=x.device)
    if B:
        grid = (B * groups, triton.cdiv(k, block_k), triton.cdiv(Ho * Wo, block_l))
        _conv_project_kernel[grid](x, packed, y, C, H, Wd, Ho, Wo, k, W, d, cg, groups, scale,
                                   KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw, ACC=_acc(x),
                                   BLOCK_L=block_l, BLOCK_K=block_k)
    return y
