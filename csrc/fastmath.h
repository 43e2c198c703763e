// Branch-free float32 log / sin / cos / exp (Cephes polynomials, about 1 ulp) for CPU kernels: plain
// C++ that the compiler vectorizes (AVX2 / AVX-512 with -march=native; the CPU extension is built with
// -fno-math-errno so that sqrtf is one instruction too). libm's scalar calls do not vectorize.
#pragma once
#include <stdint.h>
#include <string.h>

namespace fastnoise {
namespace fastmath {

inline float as_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
inline int32_t as_int(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

// log(x) for normal x > 0 (Cephes logf).
inline float log_fast(float x) {
  const int32_t bits = as_int(x);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = as_float((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const bool small = m < 0.70710678118654752f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292E-2f;
  y = y * m - 1.1514610310E-1f;
  y = y * m + 1.1676998740E-1f;
  y = y * m - 1.2420140846E-1f;
  y = y * m + 1.4249322787E-1f;
  y = y * m - 1.6668057665E-1f;
  y = y * m + 2.0000714765E-1f;
  y = y * m - 2.4999993993E-1f;
  y = y * m + 3.3333331174E-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return (m + y) + 0.693359375f * fe;
}

// sin(t), cos(t) for t in [0, 2*pi] (Cephes sinf / cosf: octant reduction, extended-precision pi/4).
inline void sincos_fast(float t, float* s, float* c) {
  int32_t j = static_cast<int32_t>(t * 1.27323954473516f);
  j = (j + 1) & ~1;
  const float y = static_cast<float>(j);
  const float x = ((t - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
  const float z = x * x;
  const float sp = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * x + x;
  const float cp = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z -
                   0.5f * z + 1.0f;
  const int32_t q = (j >> 1) & 3;  // t = x + q * pi / 2
  const float sv = (q & 1) ? cp : sp;
  const float cv = (q & 1) ? sp : cp;
  *s = (q & 2) ? -sv : sv;
  *c = ((q + 1) & 2) ? -cv : cv;
}

// exp(x) (Cephes expf), overflow to inf, underflow to 0 / denormals, NaN propagates.
inline float exp_fast(float x) {
  float c = x < -104.0f ? -104.0f : x;
  c = c > 89.0f ? 89.0f : c;
  const float fx = __builtin_floorf(c * 1.44269504088896341f + 0.5f);
  float r = c - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * z + r + 1.0f;
  const int32_t n = static_cast<int32_t>(fx);
  const int32_t n1 = n / 2, n2 = n - n1;  // two scalings keep each power of two a normal float
  y = y * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
  return x != x ? x : y;
}

inline double exp_fast(double x) { return __builtin_exp(x); }

}  // namespace fastmath
}  // namespace fastnoise
