// Native-width vectors for the CPU kernels: the widest vector register of the ISA the file is compiled for
// (64 bytes with AVX-512, 32 with AVX / AVX2, 16 otherwise) as GCC / Clang vector extensions, plus the two
// operations the extensions do not express well: 32 x 32 -> 64-bit products (x86 pmuludq) and sqrt. Each
// has an intrinsic path per ISA and a portable fallback; all of them give the same bits (integer products,
// IEEE-754 correctly rounded sqrt), so code written on these types computes identical values on every ISA.
// (csrc/simd.h's Vec is a fixed 64 bytes: right for register tiles, but GCC lowers a 64-byte vector poorly
// on AVX2 when its code is long, e.g. the Philox rounds; these types always fill exactly one register.)
// FASTNOISE_SIMD_GENERIC=1 (a test switch) uses 16-byte vectors and the portable fallbacks on any ISA.
#pragma once
#include <stdint.h>
#include <string.h>

#include <utility>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#if !(defined(FASTNOISE_SIMD_GENERIC) && FASTNOISE_SIMD_GENERIC)
#if defined(__AVX512F__)
#define FN_NAT_AVX512F 1
#endif
#if defined(__AVX2__)
#define FN_NAT_AVX2 1
#endif
#if defined(__AVX__)
#define FN_NAT_AVX 1
#endif
#if defined(__SSE2__)
#define FN_NAT_SSE2 1
#endif
#endif

// Forced inlining: these helpers take and return vectors, which must stay in registers (an out-of-line call
// passes vectors wider than the ISA's registers through memory).
#define FN_VINLINE inline __attribute__((always_inline))

namespace fastnoise {
namespace nat {

#if defined(FN_NAT_AVX512F)
constexpr int kBytes = 64;
#elif defined(FN_NAT_AVX)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif
constexpr int kLanes = kBytes / 4;    // 32-bit lanes
constexpr int kLanes64 = kBytes / 8;  // 64-bit lanes

typedef float f32 __attribute__((vector_size(kBytes)));
typedef int32_t i32 __attribute__((vector_size(kBytes)));
typedef uint32_t u32 __attribute__((vector_size(kBytes)));
typedef uint64_t u64 __attribute__((vector_size(kBytes)));

// Full 64-bit products of the low 32 bits of each 64-bit lane (the high halves of a and b are ignored).
FN_VINLINE u64 mul_lo32(u64 a, u64 b) {
#if defined(FN_NAT_AVX512F)
  return (u64)_mm512_mul_epu32((__m512i)a, (__m512i)b);
#elif defined(FN_NAT_AVX2)
  return (u64)_mm256_mul_epu32((__m256i)a, (__m256i)b);
#elif defined(FN_NAT_AVX)
  const __m256i x = (__m256i)a, y = (__m256i)b;
  const __m128i lo = _mm_mul_epu32(_mm256_castsi256_si128(x), _mm256_castsi256_si128(y));
  const __m128i hi = _mm_mul_epu32(_mm256_extractf128_si256(x, 1), _mm256_extractf128_si256(y, 1));
  return (u64)_mm256_insertf128_si256(_mm256_castsi128_si256(lo), hi, 1);
#elif defined(FN_NAT_SSE2)
  return (u64)_mm_mul_epu32((__m128i)a, (__m128i)b);
#else
  return (a & 0xffffffffull) * (b & 0xffffffffull);
#endif
}

FN_VINLINE f32 sqrt(f32 x) {
#if defined(FN_NAT_AVX512F)
  return (f32)_mm512_sqrt_ps((__m512)x);
#elif defined(FN_NAT_AVX)
  return (f32)_mm256_sqrt_ps((__m256)x);
#elif defined(FN_NAT_SSE2)
  return (f32)_mm_sqrt_ps((__m128)x);
#else
  for (int l = 0; l < kLanes; ++l) x[l] = __builtin_sqrtf(x[l]);
  return x;
#endif
}

// Bit l of the result = lane l of a comparison mask is set (x86 movmskps; a lane loop elsewhere).
FN_VINLINE uint32_t movemask(i32 m) {
#if defined(FN_NAT_AVX512F)
  return static_cast<uint32_t>(_mm512_cmplt_epi32_mask((__m512i)m, _mm512_setzero_si512()));
#elif defined(FN_NAT_AVX)
  return static_cast<uint32_t>(_mm256_movemask_ps((__m256)m));
#elif defined(FN_NAT_SSE2)
  return static_cast<uint32_t>(_mm_movemask_ps((__m128)m));
#else
  uint32_t r = 0;
  for (int l = 0; l < kLanes; ++l) r |= (m[l] < 0 ? 1u : 0u) << l;
  return r;
#endif
}

// Unaligned load / store of one native vector of floats.
FN_VINLINE f32 load(const float* p) {
  f32 v;
  memcpy(&v, p, sizeof(v));
  return v;
}
FN_VINLINE void store(float* p, f32 v) { memcpy(p, &v, sizeof(v)); }

FN_VINLINE f32 to_float(i32 v) { return __builtin_convertvector(v, f32); }
FN_VINLINE i32 trunc_int(f32 v) { return __builtin_convertvector(v, i32); }  // toward zero, as a C cast

// floor(v) (exact) and y * 2^n (integral n, one rounding, denormal results included) in one instruction, where
// the ISA has one: FN_NAT_HAS_FLOOR / FN_NAT_HAS_SCALEF say so. csrc/fastmath.h falls back to its portable
// forms elsewhere; both give the same bits.
#if defined(FN_NAT_AVX512F) || defined(FN_NAT_AVX) || (defined(FN_NAT_SSE2) && defined(__SSE4_1__))
#define FN_NAT_HAS_FLOOR 1
FN_VINLINE f32 floor(f32 v) {
#if defined(FN_NAT_AVX512F)
  return (f32)_mm512_roundscale_ps((__m512)v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
#elif defined(FN_NAT_AVX)
  return (f32)_mm256_floor_ps((__m256)v);
#else
  return (f32)_mm_floor_ps((__m128)v);
#endif
}
#endif
#if defined(FN_NAT_AVX512F)
#define FN_NAT_HAS_SCALEF 1
FN_VINLINE f32 scale_pow2(f32 y, f32 n) { return (f32)_mm512_scalef_ps((__m512)y, (__m512)n); }
#endif

// Compile-time lane permutations (GCC >= 12 / Clang __builtin_shufflevector with index packs).
template <int... L>
struct Perm {};

template <typename V, int... L>
FN_VINLINE auto shuffle(V a, V b, Perm<L...>) {  // a vector of sizeof...(L) elements
  return __builtin_shufflevector(a, b, L...);
}

template <template <int> class Map, int... L>
constexpr Perm<Map<L>::value...> make_perm(std::integer_sequence<int, L...>) {
  return {};
}

// The permutation p[i] = Map<i>::value over the kLanes 32-bit lanes of two source vectors (0 .. 2 kLanes - 1).
template <template <int> class Map>
constexpr auto perm() {
  return make_perm<Map>(std::make_integer_sequence<int, kLanes>{});
}

// N native vectors as one value: every operation is N native instructions next to each other, i.e. N
// independent dependency chains interleaved in program order, which the out-of-order core overlaps (long
// polynomial chains on one register leave it waiting). GCC lowers vector_size types wider than the ISA
// through memory; this struct keeps each piece in a register.
template <typename V, int N>
struct Multi {
  V v[N];
};

#define FN_MULTI_BINARY(op)                                                              \
  template <typename V, int N>                                                           \
  FN_VINLINE Multi<V, N> operator op(const Multi<V, N>& a, const Multi<V, N>& b) {       \
    Multi<V, N> r;                                                                       \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] op b.v[i];                              \
    return r;                                                                            \
  }                                                                                      \
  template <typename V, int N, typename S>                                               \
  FN_VINLINE Multi<V, N> operator op(const Multi<V, N>& a, S b) {                        \
    Multi<V, N> r;                                                                       \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] op b;                                   \
    return r;                                                                            \
  }                                                                                      \
  template <typename V, int N, typename S>                                               \
  FN_VINLINE Multi<V, N> operator op(S a, const Multi<V, N>& b) {                        \
    Multi<V, N> r;                                                                       \
    for (int i = 0; i < N; ++i) r.v[i] = a op b.v[i];                                   \
    return r;                                                                            \
  }
FN_MULTI_BINARY(+)
FN_MULTI_BINARY(-)
FN_MULTI_BINARY(*)
FN_MULTI_BINARY(&)
FN_MULTI_BINARY(|)
FN_MULTI_BINARY(^)
FN_MULTI_BINARY(>>)
FN_MULTI_BINARY(<<)
#undef FN_MULTI_BINARY

#define FN_MULTI_COMPARE(op)                                                             \
  template <typename V, int N, typename S>                                               \
  FN_VINLINE auto operator op(const Multi<V, N>& a, S b) {                               \
    Multi<decltype(a.v[0] op b), N> r;                                                   \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] op b;                                   \
    return r;                                                                            \
  }
FN_MULTI_COMPARE(<)
FN_MULTI_COMPARE(>)
FN_MULTI_COMPARE(==)
FN_MULTI_COMPARE(!=)
#undef FN_MULTI_COMPARE

template <typename V, int N>
FN_VINLINE Multi<V, N> operator-(const Multi<V, N>& a) {
  Multi<V, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = -a.v[i];
  return r;
}
template <typename V, int N>
FN_VINLINE Multi<V, N>& operator+=(Multi<V, N>& a, const Multi<V, N>& b) {
  for (int i = 0; i < N; ++i) a.v[i] += b.v[i];
  return a;
}

// c ? a : b per lane (c: a comparison result)
template <typename C, typename V, int N>
FN_VINLINE Multi<V, N> select(const Multi<C, N>& c, const Multi<V, N>& a, const Multi<V, N>& b) {
  Multi<V, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = c.v[i] ? a.v[i] : b.v[i];
  return r;
}
template <typename C, typename V>
FN_VINLINE V select(C c, V a, V b) {
  return c ? a : b;
}

// lane-type conversions of each piece: To(x) for same-size vectors reinterprets bits
template <typename To, typename V, int N>
FN_VINLINE Multi<To, N> bit_cast(const Multi<V, N>& a) {
  Multi<To, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = (To)a.v[i];
  return r;
}
template <int N>
FN_VINLINE Multi<f32, N> to_float(const Multi<i32, N>& a) {
  Multi<f32, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = to_float(a.v[i]);
  return r;
}
template <int N>
FN_VINLINE Multi<i32, N> trunc_int(const Multi<f32, N>& a) {
  Multi<i32, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = trunc_int(a.v[i]);
  return r;
}
template <int N>
FN_VINLINE Multi<f32, N> sqrt(const Multi<f32, N>& a) {
  Multi<f32, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = sqrt(a.v[i]);
  return r;
}

}  // namespace nat
}  // namespace fastnoise
