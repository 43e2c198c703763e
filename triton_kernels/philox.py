"""Philox4x32-10 as Triton device functions, with the stream layout of csrc/philox.h.

Element g of the stream of `seed`: counter g >> 2, word g & 3; normals by Box-Muller on the word pair
((g >> 1) & 1) of that counter, cos for even g and sin for odd g. Each element is computed
independently, so values never depend on BLOCK or num_warps.
"""
import triton
import triton.language as tl

# Globals read inside @triton.jit functions must be tl.constexpr *objects*: the compiler rejects an annotated
# plain int (`X: tl.constexpr = 1`, "Cannot access global variable"), which the interpreter accepts
# (tools/triton_compile_check.py found it: no Triton kernel drawing normals compiled for a GPU before).
PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)
TWO_POW_M24 = tl.constexpr(5.9604644775390625e-08)
TWO_PI = tl.constexpr(6.2831853071795864769)


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint32 tensors; returns the four output words."""
    for _ in tl.static_range(10):
        a0 = c0
        a2 = c2
        c0 = tl.umulhi(PHILOX_M1, a2) ^ c1 ^ k0
        c2 = tl.umulhi(PHILOX_M0, a0) ^ c3 ^ k1
        c1 = a2 * PHILOX_M1
        c3 = a0 * PHILOX_M0
        k0 = k0 + PHILOX_W0
        k1 = k1 + PHILOX_W1
    return c0, c1, c2, c3


@triton.jit
def load_state(state_ptr):
    """(seed_lo, seed_hi, offset) from the int64[2] state tensor (seed, offset)."""
    seed = tl.load(state_ptr)
    offset = tl.load(state_ptr + 1)
    seed_lo = (seed & 0xFFFFFFFF).to(tl.uint32)
    seed_hi = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    return seed_lo, seed_hi, offset


@triton.jit
def block_words(seed_lo, seed_hi, g):
    """The four words of the Philox block holding element g (an int64 tensor)."""
    c = g >> 2
    c0 = (c & 0xFFFFFFFF).to(tl.uint32)
    c1 = ((c >> 32) & 0xFFFFFFFF).to(tl.uint32)
    z = c0 * 0
    k0 = seed_lo + z
    k1 = seed_hi + z
    return philox4x32_10(c0, c1, z, z, k0, k1)


@triton.jit
def raw_at(seed_lo, seed_hi, g):
    w0, w1, w2, w3 = block_words(seed_lo, seed_hi, g)
    j = g & 3
    return tl.where(j == 0, w0, tl.where(j == 1, w1, tl.where(j == 2, w2, w3)))


@triton.jit
def uniform_from_bits(w):
    return (w >> 8).to(tl.float32) * TWO_POW_M24


@triton.jit
def uniform_at(seed_lo, seed_hi, g):
    return uniform_from_bits(raw_at(seed_lo, seed_hi, g))


@triton.jit
def normal_at(seed_lo, seed_hi, g):
    """Standard normal of element g (float32), bit-identical wherever it is recomputed."""
    w0, w1, w2, w3 = block_words(seed_lo, seed_hi, g)
    first = ((g >> 1) & 1) == 0
    a = tl.where(first, w0, w2)
    b = tl.where(first, w1, w3)
    r = tl.sqrt(-2.0 * tl.log(1.0 - uniform_from_bits(a)))
    t = TWO_PI * uniform_from_bits(b)
    return tl.where((g & 1) == 0, r * tl.cos(t), r * tl.sin(t))
