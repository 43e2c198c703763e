// The sparse ternary projection P of NENNI (seed 000 §3), shared by the CPU and CUDA kernels:
// plain C++ / CUDA, no torch headers.
//
// Generation rule (identical in fastnoise/reference/ternary_projection.py and
// fastnoise/triton_kernels/ternary_projection.py): entry (p, q) of P [k, d] uses the raw word of
// element g = offset + p*d + q of the Philox stream of `seed`; with t = raw >> 8 (24 bits)
//   +1 if t < kTernaryPlus, -1 if kTernaryPlus <= t < kTernaryMinus, 0 otherwise
// (P(+1) = P(-1) = 2796203 / 2^24, P(0) = 11184810 / 2^24).
// Packed layout: int32 [2, k, W], W = ceil(d/32); plane 0 = +1 bitmask, plane 1 = -1 bitmask;
// entry q of row p is bit (q % 32) of word q / 32.
#pragma once
#include <stdint.h>

#include "philox.h"

namespace fastnoise {

constexpr uint32_t kTernaryPlus = 2796203u;
constexpr uint32_t kTernaryMinus = 5592406u;

FN_HD int64_t ternary_words(int64_t d) { return (d + 31) / 32; }

// +1, -1 or 0 from a raw Philox word.
FN_HD int ternary_from_raw(uint32_t raw) {
  const uint32_t t = raw >> 8;
  return t < kTernaryPlus ? 1 : (t < kTernaryMinus ? -1 : 0);
}

// The plus and minus bitmasks of word w of row p (entries q = 32w .. min(32w+32, d) - 1).
FN_HD void ternary_word(uint64_t seed, uint64_t offset, int64_t p, int64_t w, int64_t d, uint32_t* plus,
                        uint32_t* minus) {
  uint32_t pl = 0u, mi = 0u;
  const int64_t q0 = 32 * w;
  const int64_t q1 = q0 + 32 < d ? q0 + 32 : d;
  for (int64_t q = q0; q < q1; ++q) {
    const int s = ternary_from_raw(raw_at(seed, offset + static_cast<uint64_t>(p * d + q)));
    const uint32_t bit = 1u << static_cast<unsigned>(q - q0);
    if (s > 0) pl |= bit;
    if (s < 0) mi |= bit;
  }
  *plus = pl;
  *minus = mi;
}

// Entry (p, q) of a packed P: +1, -1 or 0. `packed` = int32 [2, k, W] viewed as uint32.
FN_HD int ternary_at(const uint32_t* packed, int64_t k, int64_t W, int64_t p, int64_t q) {
  const unsigned b = static_cast<unsigned>(q & 31);
  const int64_t i = p * W + (q >> 5);
  return static_cast<int>((packed[i] >> b) & 1u) - static_cast<int>((packed[k * W + i] >> b) & 1u);
}

// Output size of a conv along one axis.
FN_HD int64_t conv_out(int64_t n, int64_t k, int64_t s, int64_t p, int64_t dil) {
  return (n + 2 * p - dil * (k - 1) - 1) / s + 1;
}

}  // namespace fastnoise
