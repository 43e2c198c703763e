"""Eager references of the lr_grad kernels (fastnoise_kernels::lr_grad, lr_pack_bits): the seed's algorithm.

`lr_grad` materializes the noise eps [rows, N] (from the NumPy Philox reference, fastnoise.reference.rng)
and the per-row inputs, then forms the likelihood-ratio estimator with one GEMM: exactly what seed 002
§3.1 describes ("we need to store X and eps for every layer"). It is the ground truth of the tests; the
benchmark's eager baseline is the same math with ``torch.randn`` noise (benchmarks/bench_lr_grad.py).

Layout (shared by every backend, documented in fastnoise/ops/lr_grad.py): noise row r (of `rows`) is
the pre-activation row whose noise is ``eps[r, n] = normal(offset + r * N + n)`` (the layout of
`fastnoise.ops.noise_add` on a [rows, N] pre-activation); it uses loss weight ``losses[r % M]`` and input
row ``(r // repeat) % Rx`` of x [Rx, K] (float) or of the packed bits x [Rx, ceil(K / 32)] (int32).
"""
from __future__ import annotations

import torch

from .rng import philox


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """int32 [R, ceil(K / 32)]: bit j of word w is ``x[:, 32 w + j] != 0`` (kernel fastnoise_kernels::lr_pack_bits)."""
    R, K = x.shape
    W = (K + 31) // 32
    b = torch.zeros(R, W * 32, dtype=torch.int64, device=x.device)
    b[:, :K] = (x != 0).to(torch.int64)
    shifts = torch.arange(32, dtype=torch.int64, device=x.device)
    words = (b.view(R, W, 32) << shifts).sum(-1)  # < 2**32: exact in int64
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def unpack_bits(words: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[R, k] of 0 / 1 from the packed words (the inverse of `pack_bits`)."""
    R = words.shape[0]
    shifts = torch.arange(32, dtype=torch.int64, device=words.device)
    bits = (words.to(torch.int64).unsqueeze(-1) >> shifts) & 1
    return bits.reshape(R, -1)[:, :k].to(dtype)


def rows_of(x: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """x as a float [Rx, K] matrix (bits unpacked)."""
    return unpack_bits(x, k, dtype) if x.dtype == torch.int32 else x.to(dtype)


def noise(state: torch.Tensor, rows: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """eps [rows, n]: the normals the forward added (``offset + r * n + j``)."""
    return philox(state, rows * n, 2).to(dtype).view(rows, n)


def sign_eps(e: torch.Tensor) -> torch.Tensor:
    """The seed's sign (Eq. 3): +1 for e >= 0, -1 otherwise."""
    return torch.where(e >= 0, torch.ones_like(e), -torch.ones_like(e))


def lr_grad(x: torch.Tensor, losses: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, rows: int,
            repeat: int, k: int, sign: bool):
    """(grad_weight [N, K], grad_bias [N], grad_sigma [N]) in the math type (float64 for float64 x, else float32).

    NIT (Eq. 1 / 8): ``G_w = sum_r L_r eps_r x_r^T / sigma``, ``G_b = sum_r L_r eps_r / sigma``;
    NIT-S (Eq. 3, sign=True): ``G_w = sum_r L_r sign(eps_r) sgn(x_r)^T``, ``G_b = sum_r L_r sign(eps_r)``;
    both: ``G_sigma = sum_r L_r (eps_r^2 - 1) / sigma``.
    """
    md = math_dtype(x.dtype)
    N = sigma.numel()
    xf = rows_of(x, k, md)
    K = xf.shape[1]
    dev = sigma.device
    if rows == 0:
        z = torch.zeros(N, dtype=md, device=dev)
        return torch.zeros(N, K, dtype=md, device=dev), z, z.clone()
    eps = noise(state, rows, N, md)
    r = torch.arange(rows, device=dev)
    w = losses.to(md)[r % losses.numel()].unsqueeze(1)
    xr = xf[(r // repeat) % xf.shape[0]]
    s = sigma.to(md)
    if sign:
        we = w * sign_eps(eps)
        gw = we.t() @ torch.sign(xr)
        gb = we.sum(0)
    else:
        we = w * eps
        gw = (we.t() @ xr) / s.unsqueeze(1)
        gb = we.sum(0) / s
    gs = (w * (eps * eps - 1)).sum(0) / s
    return gw.contiguous(), gb, gs


lr_pack_bits = pack_bits  # the kernel name (fastnoise_kernels::lr_pack_bits)


def lif_noise(pre: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, steps: int, replicas: int, inner: int,
              decay: float, threshold: float) -> torch.Tensor:
    """Spikes [T, B*C, F] of LIF neurons (seed Eq. 7) fed ``pre + sigma * eps`` (kernel fastnoise_kernels::lif_noise).

    pre [S, B, F] (S = 1: the same current every step), sigma [F // inner] (feature j uses
    sigma[j // inner]); eps of (t, b, c, j) = normal(offset + ((t B + b) C + c) F + j): the layout of
    `noise_add` on the [T*B*C, F] current. ``u[t] = decay * u[t-1] * (1 - s[t-1]) + v[t]``,
    ``s[t] = (u[t] > threshold)``, u[0] = s[0] = 0.
    """
    S, B, F = pre.shape
    T, C = steps, replicas
    md = math_dtype(pre.dtype)
    eps = philox(state, T * B * C * F, 2).to(md).view(T, B * C, F)
    sig = sigma.to(md).repeat_interleave(inner)
    p = pre.to(md).repeat_interleave(C, dim=1)
    u = torch.zeros(B * C, F, dtype=md, device=pre.device)
    s = torch.zeros_like(u)
    out = torch.empty(T, B * C, F, dtype=pre.dtype, device=pre.device)
    for t in range(T):
        v = p[t if S > 1 else 0] + sig * eps[t]
        u = decay * u * (1 - s) + v
        s = (u > threshold).to(md)
        out[t] = s.to(pre.dtype)
    return out
