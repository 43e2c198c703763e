"""Triton kernel of the likelihood-ratio gradient estimator (fastnoise_kernels::lr_grad; math and row layout in
fastnoise/ops/lr_grad.py).

One program computes a BN x BK tile of G_weight (neurons x inputs) and loops over the noise rows in blocks
of BR: it regenerates eps[r, n] = normal(offset + r N + n) (philox.normal_at, the normals of the noise_add
kernel, bit for bit), weights it by L[r % M] (sign(eps) for NIT-S), gathers the input rows
(r // repeat) % Rx (bits unpacked, sgn for NIT-S) and accumulates ``f^T x`` with tl.dot in IEEE precision.
Programs of the first input tile also sum G_bias and G_sigma. Deterministic (no atomics); the noise of a
row block is regenerated once per input tile.
"""
import os

import torch
import triton
import triton.language as tl

from .philox import load_state, normal_at


@triton.jit
def _lr_grad_kernel(x_ptr, l_ptr, s_ptr, state_ptr, gw_ptr, gb_ptr, gs_ptr, rows, Rx, K, N, M, W, repeat,
                    BITS: tl.constexpr, SIGN: tl.constexpr, MATH: tl.constexpr, BN: tl.constexpr,
                    BK: tl.constexpr, BR: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    seed_lo, seed_hi, offset = load_state(state_ptr)
    n = pid_n * BN + tl.arange(0, BN)
    k = pid_k * BK + tl.arange(0, BK)
    nm = n < N
    km = k < K
    acc = tl.zeros((BN, BK), dtype=MATH)
    ab = tl.zeros((BN,), dtype=MATH)
    asg = tl.zeros((BN,), dtype=MATH)
    r0 = 0
    while r0 < rows:  # (a while loop: the interpreter's range() cannot take a runtime bound under numpy 2)
        r = (r0 + tl.arange(0, BR)).to(tl.int64)
        rm = r < rows
        g = offset + r[:, None] * N + n[None, :]
        e = normal_at(seed_lo, seed_hi, g).to(MATH)
        w = tl.load(l_ptr + r % M, mask=rm, other=0.0)
        m2 = rm[:, None] & nm[None, :]
        if SIGN:
            f = tl.where(e >= 0, w[:, None], -w[:, None])
        else:
            f = w[:, None] * e
        f = tl.where(m2, f, 0.0)
        xrow = (r // repeat) % Rx
        xm = rm[:, None] & km[None, :]
        if BITS:
            words = tl.load(x_ptr + xrow[:, None] * W + (k[None, :] >> 5), mask=xm, other=0)
            xv = ((words >> (k[None, :] & 31)) & 1).to(MATH)
        else:
            xv = tl.load(x_ptr + xrow[:, None] * K + k[None, :], mask=xm, other=0.0).to(MATH)
            if SIGN:
                xv = tl.where(xv > 0, 1.0, tl.where(xv < 0, -1.0, 0.0)).to(MATH)
        acc += tl.dot(tl.trans(f), xv, input_precision="ieee", out_dtype=MATH)
        if pid_k == 0:
            ab += tl.sum(f, axis=0)
            asg += tl.sum(tl.where(m2, w[:, None] * (e * e - 1.0), 0.0), axis=0)
        r0 += BR
    sig = tl.load(s_ptr + n, mask=nm, other=1.0)
    if SIGN:
        out = acc
    else:
        out = acc / sig[:, None]
    tl.store(gw_ptr + n[:, None] * K + k[None, :], out, mask=nm[:, None] & km[None, :])
    if pid_k == 0:
        if SIGN:
            tl.store(gb_ptr + n, ab, mask=nm)
        else:
            tl.store(gb_ptr + n, ab / sig, mask=nm)
        tl.store(gs_ptr + n, asg / sig, mask=nm)


def lr_grad(x: torch.Tensor, losses: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, rows: int, repeat: int,
            k: int, sign: bool):
    bits = x.dtype == torch.int32
    md = torch.float64 if x.dtype == torch.float64 else torch.float32
    N = sigma.numel()
    Rx = x.shape[0]
    if not bits and x.shape[1] != k:
        raise ValueError(f"k must equal x.size(1) = {x.shape[1]}, got {k}")
    gw = torch.zeros((N, k), dtype=md, device=sigma.device)
    gb = torch.zeros((N,), dtype=md, device=sigma.device)
    gs = torch.zeros((N,), dtype=md, device=sigma.device)
    if rows == 0 or N == 0:
        return gw, gb, gs
    # the interpreter (TRITON_INTERPRET=1, CPU tests) runs each block as numpy ops: fewer, larger row blocks
    BN, BK, BR = 32, 32, (256 if os.environ.get("TRITON_INTERPRET") == "1" else 32)
    grid = (triton.cdiv(N, BN), max(1, triton.cdiv(k, BK)))
    _lr_grad_kernel[grid](x.contiguous(), losses.contiguous(), sigma.contiguous(), state, gw, gb, gs, rows, Rx, k, N,
                          losses.numel(), (k + 31) // 32, repeat, BITS=bits, SIGN=bool(sign),
                          MATH=tl.float64 if md == torch.float64 else tl.float32, BN=BN, BK=BK, BR=BR)
    return gw, gb, gs



@triton.jit
def _lif_noise_kernel(pre_ptr, s_ptr, state_ptr, out_ptr, Sx, B, F, T, C, inner, decay, th,
                      MATH: tl.constexpr, BLOCK: tl.constexpr):
    """LIF (seed Eq. 7) fed pre + sigma * eps, one program per (row, block of features), looping over T."""
    row = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < F
    seed_lo, seed_hi, offset = load_state(state_ptr)
    b = row // C
    R = B * C
    sg = tl.load(s_ptr + j // inner, mask=m, other=0.0).to(MATH)
    u = tl.zeros((BLOCK,), dtype=MATH)
    keep = tl.zeros((BLOCK,), dtype=MATH) + decay
    t = 0
    while t < T:
        tp = t if Sx > 1 else 0
        p = tl.load(pre_ptr + (tp * B + b) * F + j, mask=m, other=0.0).to(MATH)
        g = (t * R + row) * F + j
        v = p + sg * normal_at(seed_lo, seed_hi, offset + g).to(MATH)
        u = u * keep + v
        spk = u > th
        keep = tl.where(spk, 0.0, decay).to(MATH)
        tl.store(out_ptr + g, spk.to(tl.float32).to(out_ptr.dtype.element_ty), mask=m)
        t += 1


def lif_noise(pre: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, steps: int, replicas: int, inner: int,
              decay: float, threshold: float) -> torch.Tensor:
    S, B, F = pre.shape
    out = torch.empty((steps, B * replicas, F), dtype=pre.dtype, device=pre.device)
    if out.numel() == 0:
        return out
    BLOCK = 128
    md = tl.float64 if pre.dtype == torch.float64 else tl.float32
    _lif_noise_kernel[(B * replicas, triton.cdiv(F, BLOCK))](pre.contiguous(), sigma.contiguous(), state, out, S, B, F,
                                                            steps, replicas, inner, float(decay), float(threshold),
                                                            MATH=md, BLOCK=BLOCK)
    return out
