// Fast CPU normals of the Philox stream (layout of csrc/philox.h), shared by the CPU kernels.
//
// The scalar Box-Muller of philox.h calls libm logf / sinf / cosf per pair, which does not vectorize and
// dominates the cost of every noise kernel. Here the Philox blocks of a chunk are computed in one loop
// and Box-Muller in a second loop with branch-free float32 log / sin / cos (Cephes polynomials, about
// 1 ulp), so that the compiler vectorizes both (AVX2 / AVX-512 with -march=native). The values agree
// with the reference to a few ulp (the contract of fastnoise.rng) and are identical wherever this
// function computes them: the forward and backward of every CPU kernel, and fastnoise.rng.normal on CPU.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "fastmath.h"
#include "philox.h"

namespace fastnoise {
namespace normal_cpu {
using namespace fastmath;

constexpr int64_t kMaxBlocks = 264;  // Philox blocks per call of fill (1024 elements + boundaries)

// Normals of stream elements g in [g0, g0 + n), n <= 4 * (kMaxBlocks - 2), into out[0 .. n).
inline void fill_normals_chunk(uint64_t seed, uint64_t g0, int64_t n, float* out) {
  if (n <= 0) return;
  const uint64_t c0 = g0 >> 2;
  const int64_t nb = static_cast<int64_t>(((g0 + n + 3) >> 2) - c0);
  uint32_t w0[kMaxBlocks], w1[kMaxBlocks], w2[kMaxBlocks], w3[kMaxBlocks];
  alignas(64) float v[4 * kMaxBlocks];
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int64_t k = 0; k < nb; ++k) {
    const uint64_t c = c0 + static_cast<uint64_t>(k);
    uint32_t x0 = static_cast<uint32_t>(c), x1 = static_cast<uint32_t>(c >> 32), x2 = 0, x3 = 0;
    uint32_t a = k0, b = k1;
    for (int r = 0; r < 10; ++r) {
      const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * x0;
      const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * x2;
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ a;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ b;
      x1 = static_cast<uint32_t>(p1);
      x3 = static_cast<uint32_t>(p0);
      x0 = n0;
      x2 = n2;
      a += kPhiloxW0;
      b += kPhiloxW1;
    }
    w0[k] = x0; w1[k] = x1; w2[k] = x2; w3[k] = x3;
  }
  for (int64_t k = 0; k < nb; ++k) {
    const float ra = __builtin_sqrtf(-2.0f * log_fast(1.0f - uniform_from_bits(w0[k])));
    const float rb = __builtin_sqrtf(-2.0f * log_fast(1.0f - uniform_from_bits(w2[k])));
    float sa, ca, sb, cb;
    sincos_fast(kTwoPi * uniform_from_bits(w1[k]), &sa, &ca);
    sincos_fast(kTwoPi * uniform_from_bits(w3[k]), &sb, &cb);
    v[4 * k + 0] = ra * ca;
    v[4 * k + 1] = ra * sa;
    v[4 * k + 2] = rb * cb;
    v[4 * k + 3] = rb * sb;
  }
  memcpy(out, v + (g0 & 3u), static_cast<size_t>(n) * sizeof(float));
}

}  // namespace normal_cpu

// Normals of elements [begin, end) of the stream (seed, offset) into out[0 .. end - begin), any length.
inline void fill_normals_cpu(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, float* out) {
  constexpr int64_t kStep = 4 * (normal_cpu::kMaxBlocks - 2);
  for (int64_t i = begin; i < end; i += kStep) {
    const int64_t n = std::min(kStep, end - i);
    normal_cpu::fill_normals_chunk(seed, offset + static_cast<uint64_t>(i), n, out + (i - begin));
  }
}

}  // namespace fastnoise
