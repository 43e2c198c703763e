// The one Philox4x32-10 implementation shared by the CPU and CUDA kernels.
//
// Stream layout (identical in fastnoise/rng.py and fastnoise/triton_kernels/philox.py):
//   key      k0 = seed & 0xffffffff, k1 = seed >> 32          (seed: 64-bit, taken as unsigned)
//   element  g  = offset + i                                   (i: flat index inside the call)
//   counter  c  = g >> 2  ->  (c0, c1, c2, c3) = (c & 0xffffffff, c >> 32, 0, 0)
//   raw(g)      = word (g & 3) of Philox4x32_10(counter, key)
//   uniform(g)  = (raw(g) >> 8) * 2^-24                        in [0, 1), exact in float32
//   normal(g)   = Box-Muller on the pair of words (2j, 2j+1), j = (g >> 1) & 1, of counter g >> 2:
//                 r = sqrt(-2 log(1 - uniform(word 2j))), t = 2*pi*uniform(word 2j+1) (float32 product)
//                 normal(g) = r * cos(t) if g is even, r * sin(t) if g is odd
// The value of element g depends on (seed, g) only: never on block size, thread count or vector width.
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define FN_HD __host__ __device__ __forceinline__
#else
#define FN_HD inline
#endif

namespace fastnoise {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr float kTwoPi = 6.2831853071795864769f;
constexpr float kTwoPow24Inv = 5.9604644775390625e-08f;  // 2^-24

struct U32x4 {
  uint32_t x, y, z, w;
};

FN_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Philox4x32 with 10 rounds (Salmon et al., SC'11; the Random123 reference algorithm).
FN_HD U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = mulhi32(kPhiloxM0, c0), lo0 = kPhiloxM0 * c0;
    const uint32_t hi1 = mulhi32(kPhiloxM1, c2), lo1 = kPhiloxM1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return {c0, c1, c2, c3};
}

// The four raw words of counter c (elements 4c .. 4c+3 of the stream of `seed`).
FN_HD U32x4 philox_block(uint64_t seed, uint64_t c) {
  return philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

FN_HD uint32_t word_of(const U32x4& b, unsigned j) {
  return j == 0 ? b.x : (j == 1 ? b.y : (j == 2 ? b.z : b.w));
}

FN_HD float uniform_from_bits(uint32_t x) { return static_cast<float>(x >> 8) * kTwoPow24Inv; }

// Box-Muller: the two normals made from words (a, b).
FN_HD void box_muller(uint32_t a, uint32_t b, float* n_cos, float* n_sin) {
  const float r = sqrtf(-2.0f * logf(1.0f - uniform_from_bits(a)));
  const float t = kTwoPi * uniform_from_bits(b);
  float s, c;
#if defined(__CUDA_ARCH__)
  sincosf(t, &s, &c);
#else
  s = sinf(t);
  c = cosf(t);
#endif
  *n_cos = r * c;
  *n_sin = r * s;
}

// The four normals of counter c, in stream order.
FN_HD void normal_block(const U32x4& b, float out[4]) {
  box_muller(b.x, b.y, &out[0], &out[1]);
  box_muller(b.z, b.w, &out[2], &out[3]);
}

// Single-element accessors (slow path: one Philox call per element).
FN_HD uint32_t raw_at(uint64_t seed, uint64_t g) { return word_of(philox_block(seed, g >> 2), g & 3u); }
FN_HD float uniform_at(uint64_t seed, uint64_t g) { return uniform_from_bits(raw_at(seed, g)); }
FN_HD float normal_at(uint64_t seed, uint64_t g) {
  const U32x4 b = philox_block(seed, g >> 2);
  const unsigned j = static_cast<unsigned>((g >> 1) & 1u);
  float nc, ns;
  box_muller(word_of(b, 2 * j), word_of(b, 2 * j + 1), &nc, &ns);
  return (g & 1u) ? ns : nc;
}

}  // namespace fastnoise

#if !defined(__CUDACC__)
#include <cmath>
namespace fastnoise {
// Generic CPU driver: calls f(i, value) for i in [begin, end) of the stream starting at `offset`,
// one Philox block per 4 elements (the boundary blocks are partial). `Gen` maps a block to 4 values.
template <typename T, typename Gen, typename F>
inline void for_each_in_stream(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, Gen gen, F f) {
  int64_t i = begin;
  while (i < end) {
    const uint64_t g = offset + static_cast<uint64_t>(i);
    const uint64_t c = g >> 2;
    T v[4];
    gen(philox_block(seed, c), v);
    for (unsigned j = static_cast<unsigned>(g & 3u); j < 4 && i < end; ++j, ++i) f(i, v[j]);
  }
}
}  // namespace fastnoise
#endif
