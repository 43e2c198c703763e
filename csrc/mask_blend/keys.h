// Order-preserving integer keys of mask_blend scores, shared by the CPU and CUDA kernels (plain
// C++ / CUDA, no torch). The Triton kernel (triton_kernels/mask_blend.py) computes the same keys.
//
// key(a) > key(b)  <=>  score a ranks above score b, where the score is |x| (abs) or x (signed),
// NaN ranks above every number and all NaNs are equal (key = all ones), and -0 == +0.
// float16 / bfloat16 scores are converted to float32 first (exact, order-preserving); float64
// scores get 64-bit keys.
#pragma once
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define MB_HD __host__ __device__ __forceinline__
#else
#define MB_HD inline
#endif

namespace fastnoise {

MB_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
#endif
}

MB_HD uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return b;
#endif
}

// Branch-free so that loops computing keys vectorize.
MB_HD uint32_t score_key(float x, bool signed_score) {
  const uint32_t b = float_bits(x);
  const uint32_t mag = b & 0x7FFFFFFFu;
  const bool nan = mag > 0x7F800000u;
  uint32_t k;
  if (signed_score) {
    // negative: flip all bits; non-negative (and -0, via mag == 0): set the sign bit
    k = ((b >> 31) && mag != 0u) ? ~b : (mag | 0x80000000u);
  } else {
    k = mag;
  }
  return nan ? 0xFFFFFFFFu : k;
}

MB_HD uint64_t score_key(double x, bool signed_score) {
  const uint64_t b = double_bits(x);
  const uint64_t mag = b & 0x7FFFFFFFFFFFFFFFull;
  const bool nan = mag > 0x7FF0000000000000ull;
  uint64_t k;
  if (signed_score) {
    k = ((b >> 63) && mag != 0ull) ? ~b : (mag | 0x8000000000000000ull);
  } else {
    k = mag;
  }
  return nan ? 0xFFFFFFFFFFFFFFFFull : k;
}

// The key type of a scalar type: 64-bit for double, 32-bit for float / half / bfloat16.
template <typename T> struct KeyOf { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };

}  // namespace fastnoise
