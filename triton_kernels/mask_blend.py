"""Triton kernels of mask_blend (signatures of fastnoise_kernels::mask_blend / mask_select / mask_blend_backward).

The tensor is viewed as [outer, F, inner] (F = size of `dim`). A *row* is one (outer, group, inner)
index: for top-k the group is the whole F axis, for N:M a group is M consecutive features; the L
features of a row sit `inner` elements apart, so dim=1 of NCHW needs no transpose. One program takes
BLOCK_R rows x BLOCK_L (next power of two >= L) features in registers:

* keys: order-preserving integer keys of the scores (csrc/mask_blend/keys.h): 32-bit for
  float32/float16/bfloat16 (via float32), 64-bit for float64; NaN -> all ones, -0 == +0;
* threshold: the k-th largest key, by a bitwise binary search from the top bit (count keys >= cand);
* ties: keys equal to the threshold are taken in index order (tl.cumsum of the equality) until k.

Limit: L <= MAX_FEATURES = 4096 per row (top-k: the size of dim; N:M: M); larger rows raise
ValueError (use the cpu or cuda backend).
"""
import torch
import triton
import triton.language as tl

MAX_FEATURES = 4096
_TILE = 4096  # elements per program (BLOCK_R * BLOCK_L)


@triton.jit
def _score_key(x, SIGNED: tl.constexpr, KEY64: tl.constexpr):
    if KEY64:
        b = x.to(tl.uint64, bitcast=True)
        mag = b & 0x7FFFFFFFFFFFFFFF
        nan = mag > 0x7FF0000000000000
        if SIGNED:
            neg = ((b >> 63) != 0) & (mag != 0)
            k = tl.where(neg, b ^ 0xFFFFFFFFFFFFFFFF, mag | 0x8000000000000000)
        else:
            k = mag
        k = tl.where(nan, 0xFFFFFFFFFFFFFFFF, k)
    else:
        b = x.to(tl.float32).to(tl.uint32, bitcast=True)
        mag = b & 0x7FFFFFFF
        nan = mag > 0x7F800000
        if SIGNED:
            neg = ((b >> 31) != 0) & (mag != 0)
            k = tl.where(neg, b ^ 0xFFFFFFFF, mag | 0x80000000)
        else:
            k = mag
        k = tl.where(nan, 0xFFFFFFFF, k)
    return k


@triton.jit
def _mask_blend_kernel(z_ptr, za_ptr, out_ptr, mask_ptr, n_rows, groups, inner, L, k,
                       SIGNED: tl.constexpr, KEY64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
                       BLEND: tl.constexpr):
    # BLEND False (mask_select): the mask only; z_ptr and out_ptr are not read or written
    pid = tl.program_id(0)
    r = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rvalid = r < n_rows
    zero64 = tl.zeros_like(r)  # index math in int64 (integer arguments arrive as int32 or constexpr)
    inner64 = zero64 + inner
    len64 = zero64 + L
    gi = (zero64 + groups) * inner64
    o = r // gi
    rem = r % gi
    g = rem // inner64
    i = rem % inner64
    base = o * (gi * len64) + g * (len64 * inner64) + i
    j = tl.arange(0, BLOCK_L)
    valid = rvalid[:, None] & (j[None, :] < L)
    offs = base[:, None] + j[None, :].to(tl.int64) * inner64[:, None]
    za = tl.load(za_ptr + offs, mask=valid, other=0.0)
    key = _score_key(za, SIGNED, KEY64)
    if KEY64:
        key = tl.where(valid, key, tl.zeros_like(key))
        thr = tl.zeros([BLOCK_R], dtype=tl.uint64)
        bit = tl.full([BLOCK_R], 0x8000000000000000, dtype=tl.uint64)
        NBITS: tl.constexpr = 64
    else:
        key = tl.where(valid, key, tl.zeros_like(key))
        thr = tl.zeros([BLOCK_R], dtype=tl.uint32)
        bit = tl.full([BLOCK_R], 0x80000000, dtype=tl.uint32)
        NBITS: tl.constexpr = 32
    # the k-th largest key: the largest thr with count(key >= thr) >= k (padding keys 0 never count)
    for _ in range(NBITS):
        cand = thr | bit
        cnt = tl.sum((key >= cand[:, None]).to(tl.int32), axis=1)
        thr = tl.where(cnt >= k, cand, thr)
        bit = bit >> 1
    gt = (key > thr[:, None]) & valid
    eq = (key == thr[:, None]) & valid
    need = k - tl.sum(gt.to(tl.int32), axis=1)
    rank = tl.cumsum(eq.to(tl.int32), axis=1)
    sel = gt | (eq & (rank <= need[:, None]))
    if BLEND:
        z = tl.load(z_ptr + offs, mask=valid, other=0.0)
        tl.store(out_ptr + offs, tl.where(sel, z, za), mask=valid)
    tl.store(mask_ptr + offs, sel, mask=valid)


@triton.jit
def _mask_blend_backward_kernel(g_ptr, m_ptr, gz_ptr, gza_ptr, count, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = i < count
    g = tl.load(g_ptr + i, mask=valid, other=0.0)
    m = tl.load(m_ptr + i, mask=valid, other=0) != 0
    zero = tl.zeros_like(g)
    tl.store(gz_ptr + i, tl.where(m, g, zero), mask=valid)
    tl.store(gza_ptr + i, tl.where(m, zero, g), mask=valid)


def _launch(z: torch.Tensor, za: torch.Tensor, out: torch.Tensor, mask: torch.Tensor, keep: int, n: int, m: int,
            signed_score: bool, dim: int, blend: bool) -> None:
    feats = za.shape[dim]
    outer = 1
    for s in za.shape[:dim]:
        outer *= s
    inner = 1
    for s in za.shape[dim + 1:]:
        inner *= s
    length, k = (m, n) if m > 0 else (feats, keep)
    if length > MAX_FEATURES:
        what = f"N:M group (M={m})" if m > 0 else f"row (size of dim {dim} = {feats})"
        raise ValueError(f"the triton backend of mask_blend handles at most {MAX_FEATURES} features per row or "
                         f"N:M group, got a {what}; use the cpu or cuda backend")
    if za.numel() == 0:
        return
    groups = feats // length
    n_rows = outer * groups * inner
    block_l = triton.next_power_of_2(length)
    block_r = max(1, min(_TILE // block_l, triton.next_power_of_2(n_rows)))
    grid = (triton.cdiv(n_rows, block_r),)
    _mask_blend_kernel[grid](z, za, out, mask, n_rows, groups, inner, length, k,
                             SIGNED=bool(signed_score), KEY64=za.dtype == torch.float64,
                             BLOCK_R=block_r, BLOCK_L=block_l, BLEND=blend)


def mask_blend(z: torch.Tensor, za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool,
               dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    if z.shape != za.shape or z.dtype != za.dtype or z.device != za.device:
        raise ValueError("mask_blend (triton): za must have the shape, dtype and device of z")
    if not 0 <= dim < z.dim():
        raise ValueError(f"mask_blend (triton): dim must be in [0, {z.dim()}), got {dim}")
    z = z.contiguous()
    za = za.contiguous()
    out = torch.empty_like(z)
    mask = torch.empty(z.shape, dtype=torch.bool, device=z.device)
    _launch(z, za, out, mask, keep, n, m, signed_score, dim, blend=True)
    return out, mask


def mask_select(za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool, dim: int) -> torch.Tensor:
    if not 0 <= dim < za.dim():
        raise ValueError(f"mask_select (triton): dim must be in [0, {za.dim()}), got {dim}")
    za = za.contiguous()
    mask = torch.empty(za.shape, dtype=torch.bool, device=za.device)
    _launch(za, za, za, mask, keep, n, m, signed_score, dim, blend=False)
    return mask


def mask_blend_backward(grad: torch.Tensor, mask: torch.Tensor, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    if grad.shape != mask.shape or mask.dtype != torch.bool:
        raise ValueError("mask_blend_backward (triton): mask must be a bool tensor of the shape of grad")
    grad = grad.contiguous()
    mask = mask.contiguous()
    gz = torch.empty_like(grad)
    gza = torch.empty_like(grad)
    count = grad.numel()
    if count:
        _mask_blend_backward_kernel[(triton.cdiv(count, block),)](grad, mask, gz, gza, count, BLOCK=block)
    return gz, gza
