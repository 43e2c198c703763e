"""Reference Philox4x32-10 in NumPy (exact uint64 arithmetic), following csrc/philox.h."""
from __future__ import annotations

import numpy as np
import torch

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 arrays holding 32-bit words; returns four uint64 arrays of words."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ k0), (p1 & _MASK), ((p0 >> _S32) ^ c3 ^ k1), (p0 & _MASK)
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def _blocks(seed: int, g: np.ndarray):
    c = g >> np.uint64(2)
    return philox4x32_10(c & _MASK, c >> _S32, np.zeros_like(c), np.zeros_like(c),
                         seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)


def _indices(offset: int, count: int) -> np.ndarray:
    return np.uint64(offset) + np.arange(count, dtype=np.uint64)


def raw_np(seed: int, offset: int, count: int) -> np.ndarray:
    g = _indices(offset, count)
    w = np.stack(_blocks(seed, g))  # [4, count]
    return w[(g & np.uint64(3)).astype(np.int64), np.arange(count)]


def uniform_from_bits(w: np.ndarray) -> np.ndarray:
    return ((w >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)


def box_muller_np(a: np.ndarray, b: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """The reference normal of word pair (a, b): r cos t (odd False) or r sin t (odd True), in float64,
    rounded once to float32; t = float32(2 pi) * uniform(b) is the one float32 product every backend makes."""
    ua = uniform_from_bits(a)
    ub = uniform_from_bits(b)
    t = (np.float32(2 * np.pi) * ub).astype(np.float32)
    r = np.sqrt(-2.0 * np.log((np.float32(1.0) - ua).astype(np.float64)))
    return np.where(odd, r * np.sin(t.astype(np.float64)), r * np.cos(t.astype(np.float64))).astype(np.float32)


def normal_np(seed: int, offset: int, count: int) -> np.ndarray:
    g = _indices(offset, count)
    w = np.stack(_blocks(seed, g))
    j = ((g >> np.uint64(1)) & np.uint64(1)).astype(np.int64)
    cols = np.arange(count)
    return box_muller_np(w[2 * j, cols], w[2 * j + 1, cols], (g & np.uint64(1)).astype(bool))


def box_muller(words: torch.Tensor) -> torch.Tensor:
    """Kernel signature of fastnoise_kernels::box_muller: int64 words [n, 4] of Philox blocks -> the four
    float32 normals of each block in stream order (words 0, 1 -> elements 0, 1; words 2, 3 -> 2, 3)."""
    w = words.detach().cpu().numpy().astype(np.uint64)
    even, odd = np.zeros(len(w), dtype=bool), np.ones(len(w), dtype=bool)
    cols = [box_muller_np(w[:, 2 * h], w[:, 2 * h + 1], o) for h in (0, 1) for o in (even, odd)]
    return torch.from_numpy(np.stack(cols, axis=1)).to(words.device)


def philox(state: torch.Tensor, count: int, kind: int) -> torch.Tensor:
    """Kernel signature of fastnoise_kernels::philox (kind 0 raw int64, 1 uniform, 2 normal)."""
    seed, offset = (int(v) for v in state.tolist())
    if kind == 0:
        out = torch.from_numpy(raw_np(seed, offset, count).astype(np.int64))
    elif kind == 1:
        out = torch.from_numpy(uniform_from_bits(raw_np(seed, offset, count)))
    else:
        out = torch.from_numpy(normal_np(seed, offset, count))
    return out.to(state.device)


def normal_like(x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The normals of elements 0..numel-1 of the stream `state`, shaped like `x`, in float32."""
    return philox(state, x.numel(), 2).reshape(x.shape)
