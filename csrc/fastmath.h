// Branch-free float32 log / sin / cos / exp (Cephes polynomials, about 1 ulp) for CPU kernels. log,
// sincos and exp are templates written once for a scalar float, a native vector (csrc/simd_native.h: nat::f32) and
// N of them (nat::Multi: N interleaved chains): the same operations in the same order, so a vector lane
// and the scalar give the same bits.
// They are compiled with floating-point contraction off (FN_FP_CONTRACT_OFF_BEGIN / END): no a*b+c is
// fused into an FMA, so the values do not depend on whether the ISA has FMA (the RNG's bits are the same
// on every build, csrc/normal_cpu.h). libm's scalar calls do not vectorize.
#pragma once
#include <stdint.h>
#include <string.h>

#if !defined(__CUDACC__)  // the vector templates are for the C++ CPU kernels
#include "simd_native.h"
#endif

// Contraction off for the functions defined between BEGIN and END (GCC: per-function optimize option, kept
// when they inline into each other; Clang: FN_FP_CONTRACT_OFF_BODY at the top of each body).
#if defined(__clang__)
#define FN_FP_CONTRACT_OFF_BEGIN
#define FN_FP_CONTRACT_OFF_END
#define FN_FP_CONTRACT_OFF_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define FN_FP_CONTRACT_OFF_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=off\")")
#define FN_FP_CONTRACT_OFF_END _Pragma("GCC pop_options")
#define FN_FP_CONTRACT_OFF_BODY
#else
#define FN_FP_CONTRACT_OFF_BEGIN
#define FN_FP_CONTRACT_OFF_END
#define FN_FP_CONTRACT_OFF_BODY
#endif

namespace fastnoise {
namespace fastmath {

inline float as_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
inline int32_t as_int(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

#if !defined(__CUDACC__)
FN_VINLINE float to_float(int32_t i) { return static_cast<float>(i); }
FN_VINLINE int32_t trunc_int(float f) { return static_cast<int32_t>(f); }
#define FN_FASTMATH_VEC(F, I)                                     \
  FN_VINLINE F as_float(I i) { return (F)i; }                         \
  FN_VINLINE I as_int(F f) { return (I)f; }                           \
  FN_VINLINE F to_float(I i) { return nat::to_float(i); }             \
  FN_VINLINE I trunc_int(F f) { return nat::trunc_int(f); }
FN_FASTMATH_VEC(nat::f32, nat::i32)
#undef FN_FASTMATH_VEC
template <int N>
FN_VINLINE nat::Multi<nat::f32, N> as_float(const nat::Multi<nat::i32, N>& i) { return nat::bit_cast<nat::f32>(i); }
template <int N>
FN_VINLINE nat::Multi<nat::i32, N> as_int(const nat::Multi<nat::f32, N>& f) { return nat::bit_cast<nat::i32>(f); }
// (to_float / trunc_int of a Multi: nat's, found by argument-dependent lookup)
using nat::select;

template <typename F>
using IntOf = decltype(as_int(F()));

FN_FP_CONTRACT_OFF_BEGIN

// log(x * 2^shift) = s + 0.693359375 * fe for normal x > 0 (Cephes logf; shift moves the exponent only, so
// the result is bit-identical to log_fast of the scaled argument). Returns s, sets fe.
template <typename F>
FN_VINLINE F log_parts(F x, int shift, F* fe_out) {
  FN_FP_CONTRACT_OFF_BODY
  using I = IntOf<F>;
  const I bits = as_int(x);
  I e = ((bits >> 23) & 0xff) - (126 - shift);
  F m = as_float((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const auto small = m < 0.70710678118654752f;
  e = select(small, e - 1, e);
  m = select(small, m + m - 1.0f, m - 1.0f);
  const F z = m * m;
  F y = F() + 7.0376836292E-2f;
  y = y * m - 1.1514610310E-1f;
  y = y * m + 1.1676998740E-1f;
  y = y * m - 1.2420140846E-1f;
  y = y * m + 1.4249322787E-1f;
  y = y * m - 1.6668057665E-1f;
  y = y * m + 2.0000714765E-1f;
  y = y * m - 2.4999993993E-1f;
  y = y * m + 3.3333331174E-1f;
  y = y * m * z;
  const F fe = to_float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  *fe_out = fe;
  return m + y;
}

constexpr float kLn2Hi = 0.693359375f;  // the high part of log(2) in Cephes logf

// log(x) for normal x > 0 (Cephes logf).
template <typename F>
FN_VINLINE F log_fast(F x) {
  FN_FP_CONTRACT_OFF_BODY
  F fe;
  const F s = log_parts(x, 0, &fe);
  return s + kLn2Hi * fe;
}

// -2 log(x * 2^shift), bit-identical to -2.0f * log_fast(x * 2^shift): scaling by -2 is exact, so
// -2 * fl(s + fl(c fe)) = fl(-(s + s) + fl(-2c fe)); one multiplication fewer.
template <typename F>
FN_VINLINE F neg2_log_fast(F x, int shift) {
  FN_FP_CONTRACT_OFF_BODY
  F fe;
  const F s = log_parts(x, shift, &fe);
  return -(s + s) + (-2.0f * kLn2Hi) * fe;
}

// sin(t), cos(t) for t in [0, 2*pi] (Cephes sinf / cosf: octant reduction, extended-precision pi/4).
template <typename F>
FN_VINLINE void sincos_fast(F t, F* s, F* c) {
  FN_FP_CONTRACT_OFF_BODY
  using I = IntOf<F>;
  I j = trunc_int(t * 1.27323954473516f);
  j = (j + 1) & ~1;
  const F y = to_float(j);
  const F x = ((t - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
  const F z = x * x;
  const F sp = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * x + x;
  const F cp = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z -
               0.5f * z + 1.0f;
  const I q = (j >> 1) & 3;  // t = x + q * pi / 2
  const auto odd = (q & 1) != 0;
  const F sv = select(odd, cp, sp);
  const F cv = select(odd, sp, cp);
  *s = select((q & 2) != 0, -sv, sv);
  *c = select(((q + 1) & 2) != 0, -cv, cv);
}

// floor(v) for |v| < 2^31 (truncation, one down where that rounded up: exact) and y * 2^n for an integral n in
// [-151, 128] and y in [0.5, 2] (two exact power-of-two factors 2^floor(n/2), 2^(n - floor(n/2)), each a
// normal float, so only the second product rounds: correctly rounded, denormal results included), for a
// scalar or a native vector; one instruction where the ISA has one (nat::floor, nat::scale_pow2: the same bits).
template <typename F>
FN_VINLINE F floor_t(F v) {
  const F t = to_float(trunc_int(v));
  return select(t > v, t - 1.0f, t);
}
template <typename F>
FN_VINLINE F scale_pow2_t(F y, F n) {
  using I = IntOf<F>;
  const I k = trunc_int(n), k1 = k >> 1, k2 = k - k1;
  return y * as_float((k1 + 127) << 23) * as_float((k2 + 127) << 23);
}
#if defined(FN_NAT_HAS_FLOOR)
FN_VINLINE nat::f32 floor_t(nat::f32 v) { return nat::floor(v); }
#endif
#if defined(FN_NAT_HAS_SCALEF)
FN_VINLINE nat::f32 scale_pow2_t(nat::f32 y, nat::f32 n) { return nat::scale_pow2(y, n); }
#endif

// exp(x) (Cephes expf) of a scalar or a native vector: overflow to inf, underflow to 0 / denormals, NaN
// propagates (through c and r: no select on x). Branch-free with selects only (a loop of the scalar
// version does not vectorize with GCC: floorf is inlined only without -ftrapping-math, and the clamps
// before a float -> int conversion stay branches), so the same code runs lane-wise in a vector.
template <typename F>
FN_VINLINE F exp_t(F x) {
  FN_FP_CONTRACT_OFF_BODY
  const F lo = F() - 104.0f, hi = F() + 89.0f;
  F c = select(x < -104.0f, lo, x);
  c = select(c > 89.0f, hi, c);
  const F v = c * 1.44269504088896341f + 0.5f;
  const F fx = floor_t(v);  // exact (|v| <= 151)
  F r = c - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  const F z = r * r;
  F y = F() + 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * z + r + 1.0f;
  return scale_pow2_t(y, fx);
}

inline float exp_fast(float x) { return exp_t(x); }

FN_FP_CONTRACT_OFF_END
#endif  // !__CUDACC__

inline double exp_fast(double x) { return __builtin_exp(x); }

}  // namespace fastmath
}  // namespace fastnoise
