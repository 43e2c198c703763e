// The Philox stream on the CPU (layout of csrc/philox.h), vectorized: raw words, uniforms and normals of a
// range of elements, shared by every CPU kernel (fastnoise.rng, the noise ops' forward and backward).
//
// Philox: one vector lane per block, every lane of the build's widest vector register (csrc/simd_native.h).
// Each 32-bit word lives in the low half of a 64-bit lane, so x86's pmuludq gives both halves of a product
// with no shuffle (the high halves of the lanes are don't-care: pmuludq ignores them and only low halves
// are read out). Round 1 multiplies one word (counter words 2, 3 are 0) and round 2 one word per lane plus
// one lane-independent product when the high counter word is the same in every lane: 18 vector products per
// block instead of 20. Two groups of lanes are packed into one vector of words per step.
//
// Normals: Box-Muller as in csrc/philox.h with the Cephes log / sincos of fastmath.h on whole vectors.
// Exact rewrites that keep the reference's values bit for bit: 1 - uniform(w) = (2^24 - (w >> 8)) * 2^-24
// (the log takes the integer and a -24 exponent shift), t = (w >> 8) * (2 pi 2^-24), and -2 log as in
// fastmath::neg2_log_fast. The accuracy against the float64 reference is tested exhaustively per factor and
// over a long stream (tests/ops/test_philox_accuracy.py; bound in fastnoise/rng.py).
//
// Bits: integer work is exact; the float operations are IEEE add / sub / mul / sqrt / conversions with
// contraction into FMA switched off in every generating function (FN_FP_CONTRACT_OFF_BEGIN, fastmath.h), so a build for
// AVX-512, AVX2, SSE2 or without SIMD produces the same normals, and every kernel (forward and backward)
// gets the same normals for the same elements.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "fastmath.h"
#include "philox.h"
#include "simd_native.h"

namespace fastnoise {
FN_FP_CONTRACT_OFF_BEGIN
namespace philox_vec {

using nat::f32;
using nat::i32;
using nat::u32;
using nat::u64;
constexpr int kLanes = nat::kLanes;         // blocks per native vector of words
constexpr int kSub = 2;                     // native vectors of words per step
constexpr int kBlocks = kSub * kLanes;      // blocks per step
constexpr int kStep = 4 * kBlocks;          // stream elements per step
constexpr int kHalf = nat::kLanes64;        // blocks per group (one word per 64-bit lane)

// Lane L of group G (0 = a, 1 = b) holds block 4 (L / 2) + 2 G + (L % 2) of the step, so that packing the
// low halves of a and b per 128-bit quarter (x86 shufps 0x88) yields the blocks in order.
template <int G, int... L>
FN_VINLINE u64 group_offsets(std::integer_sequence<int, L...>) {
  return u64{static_cast<uint64_t>(4 * (L / 2) + 2 * G + (L % 2))...};
}

template <int P>
struct PackLow {  // lane P of the packed words: quarter q = P / 4, slot r = P % 4
  static constexpr int q = P / 4, r = P % 4;
  static constexpr int value = r < 2 ? 2 * (2 * q + r) : kLanes + 2 * (2 * q + r - 2);
};
template <int P>
struct HighToLow {  // the high half of each 64-bit lane, into both halves
  static constexpr int value = P | 1;
};

FN_VINLINE u64 high_half(u64 p) {
  return (u64)nat::shuffle((u32)p, (u32)p, nat::perm<HighToLow>());
}

FN_VINLINE u64 splat32(uint32_t v) { return (u64)(u32{} + v); }

// Round keys of a seed: key[r] = (k0 + r W0, k1 + r W1), broadcast.
struct Keys {
  u64 k0[10], k1[10];
  uint32_t s0[10], s1[10];
  explicit Keys(uint64_t seed) {
    uint32_t a = static_cast<uint32_t>(seed), b = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r, a += kPhiloxW0, b += kPhiloxW1) {
      s0[r] = a;
      s1[r] = b;
      k0[r] = splat32(a);
      k1[r] = splat32(b);
    }
  }
};

// The four words of blocks c + s kLanes + l (s < kSub, l < kLanes): w[j][s][l] = word j of that block.
// 2 kSub groups of kHalf blocks, their rounds interleaved in program order (independent dependency chains).
template <bool kUniformHigh>
FN_VINLINE void philox_step(const Keys& k, uint64_t c, u32 w[4][kSub]) {
  constexpr int G = 2 * kSub;
  constexpr auto seq = std::make_integer_sequence<int, kHalf>{};
  const u64 m0 = splat32(kPhiloxM0), m1 = splat32(kPhiloxM1);
  const u64 off0 = group_offsets<0>(seq), off1 = group_offsets<1>(seq);
  u64 x0[G], x1[G], x2[G], x3[G];
  u64 hi0 = {}, lo0 = {};
  if (kUniformHigh) {  // round 2's x0 = high counter word ^ k0: one value for all lanes
    const uint64_t q = static_cast<uint64_t>(kPhiloxM0) * (static_cast<uint32_t>(c >> 32) ^ k.s0[0]);
    hi0 = splat32(static_cast<uint32_t>(q >> 32));
    lo0 = splat32(static_cast<uint32_t>(q));
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    const u64 ctr = (g & 1 ? off1 : off0) + (c + static_cast<uint64_t>((g >> 1) * kLanes));
    // round 1 (counter words 2 and 3 are 0: one product)
    const u64 p0 = nat::mul_lo32(ctr, m0);
    const u64 y2 = high_half(p0) ^ k.k1[0], y3 = p0;
    // round 2 (x1 = 0)
    const u64 p1 = nat::mul_lo32(y2, m1);
    u64 h = hi0, l = lo0;
    if (!kUniformHigh) {
      const u64 q = nat::mul_lo32(high_half(ctr) ^ k.k0[0], m0);
      h = high_half(q);
      l = q;
    }
    x0[g] = high_half(p1) ^ k.k0[1];
    x1[g] = p1;
    x2[g] = h ^ y3 ^ k.k1[1];
    x3[g] = l;
  }
#pragma GCC unroll 8
  for (int r = 2; r < 10; ++r) {
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const u64 p0 = nat::mul_lo32(x0[g], m0), p1 = nat::mul_lo32(x2[g], m1);
      x0[g] = high_half(p1) ^ x1[g] ^ k.k0[r];
      x1[g] = p1;
      x2[g] = high_half(p0) ^ x3[g] ^ k.k1[r];
      x3[g] = p0;
    }
  }
  for (int s = 0; s < kSub; ++s) {
    w[0][s] = nat::shuffle((u32)x0[2 * s], (u32)x0[2 * s + 1], nat::perm<PackLow>());
    w[1][s] = nat::shuffle((u32)x1[2 * s], (u32)x1[2 * s + 1], nat::perm<PackLow>());
    w[2][s] = nat::shuffle((u32)x2[2 * s], (u32)x2[2 * s + 1], nat::perm<PackLow>());
    w[3][s] = nat::shuffle((u32)x3[2 * s], (u32)x3[2 * s + 1], nat::perm<PackLow>());
  }
}

FN_VINLINE void philox_any(const Keys& k, uint64_t c, u32 w[4][kSub]) {
  if ((c >> 32) == ((c + kBlocks - 1) >> 32)) {
    philox_step<true>(k, c, w);
  } else {
    philox_step<false>(k, c, w);
  }
}

// Stream-order store of four vectors: out[4 l + j] = v[j][l] (in-quarter unpacks, then 16-byte stores).
template <int P>
struct Unpack32Lo {  // unpcklps per quarter
  static constexpr int value = ((P & 1) ? kLanes : 0) + (P & ~3) + ((P & 3) >> 1);
};
template <int P>
struct Unpack32Hi {
  static constexpr int value = Unpack32Lo<P>::value + 2;
};
template <int P>
struct Unpack64Lo {  // unpcklpd per quarter
  static constexpr int value = ((P & 2) ? kLanes : 0) + (P & ~3) + (P & 1);
};
template <int P>
struct Unpack64Hi {
  static constexpr int value = Unpack64Lo<P>::value + 2;
};

template <typename V, typename T>
FN_VINLINE void store_stream_order(const V v[4], T* out) {
  static_assert(sizeof(T) == 4, "32-bit elements");
  const V a = nat::shuffle(v[0], v[1], nat::perm<Unpack32Lo>()), b = nat::shuffle(v[0], v[1], nat::perm<Unpack32Hi>());
  const V c = nat::shuffle(v[2], v[3], nat::perm<Unpack32Lo>()), d = nat::shuffle(v[2], v[3], nat::perm<Unpack32Hi>());
  const V e[4] = {nat::shuffle(a, c, nat::perm<Unpack64Lo>()), nat::shuffle(a, c, nat::perm<Unpack64Hi>()),
                  nat::shuffle(b, d, nat::perm<Unpack64Lo>()), nat::shuffle(b, d, nat::perm<Unpack64Hi>())};
  // quarter q of e[i] holds the four values of block 4 q + i
  for (int q = 0; q < kLanes / 4; ++q)
    for (int i = 0; i < 4; ++i) memcpy(out + 16 * q + 4 * i, reinterpret_cast<const T*>(&e[i]) + 4 * q, 16);
}

constexpr float kTwoPiTwoPow24Inv = kTwoPi * kTwoPow24Inv;  // exact: a power-of-two scaling

// Box-Muller of the step's words (csrc/philox.h): n[0] = r_a cos t_a, n[1] = r_a sin t_a, n[2] = r_b cos t_b,
// n[3] = r_b sin t_b, with (r_a, r_b) from words 0, 2 and (t_a, t_b) from words 1, 3: the 2 kSub radii in
// one Multi (as many interleaved log chains), the 2 kSub angles in another.
FN_VINLINE void box_muller_step(const u32 w[4][kSub], f32 n[4][kSub]) {
  FN_FP_CONTRACT_OFF_BODY
  constexpr int M = 2 * kSub;
  nat::Multi<i32, M> ur, ut;
  for (int s = 0; s < kSub; ++s) {
    ur.v[s] = (i32)((1u << 24) - (w[0][s] >> 8));
    ur.v[kSub + s] = (i32)((1u << 24) - (w[2][s] >> 8));
    ut.v[s] = (i32)(w[1][s] >> 8);
    ut.v[kSub + s] = (i32)(w[3][s] >> 8);
  }
  const nat::Multi<f32, M> r = nat::sqrt(fastmath::neg2_log_fast(nat::to_float(ur), -24));
  nat::Multi<f32, M> sn, cs;
  fastmath::sincos_fast(nat::to_float(ut) * kTwoPiTwoPow24Inv, &sn, &cs);
  for (int s = 0; s < kSub; ++s) {
    n[0][s] = r.v[s] * cs.v[s];
    n[1][s] = r.v[s] * sn.v[s];
    n[2][s] = r.v[kSub + s] * cs.v[kSub + s];
    n[3][s] = r.v[kSub + s] * sn.v[kSub + s];
  }
}

enum class Kind { kRaw, kUniform, kNormal };

template <Kind K>
struct OutOf {
  using type = float;
};
template <>
struct OutOf<Kind::kRaw> {
  using type = uint32_t;
};

// The kStep values of the step at block c, in stream order.
template <Kind K>
FN_VINLINE void step_values(const Keys& k, uint64_t c, typename OutOf<K>::type* out) {
  FN_FP_CONTRACT_OFF_BODY
  u32 w[4][kSub];
  philox_any(k, c, w);
  for (int s = 0; s < kSub; ++s) {
    typename OutOf<K>::type* o = out + 4 * kLanes * s;
    if (K == Kind::kRaw) {
      const u32 v[4] = {w[0][s], w[1][s], w[2][s], w[3][s]};
      store_stream_order(v, reinterpret_cast<uint32_t*>(o));
    } else if (K == Kind::kUniform) {
      f32 u[4];
      for (int j = 0; j < 4; ++j) u[j] = nat::to_float((i32)(w[j][s] >> 8)) * kTwoPow24Inv;
      store_stream_order(u, reinterpret_cast<float*>(o));
    }
  }
  if (K == Kind::kNormal) {
    f32 n[4][kSub];
    box_muller_step(w, n);
    for (int s = 0; s < kSub; ++s) {
      const f32 v[4] = {n[0][s], n[1][s], n[2][s], n[3][s]};
      store_stream_order(v, reinterpret_cast<float*>(out + 4 * kLanes * s));
    }
  }
}

// Values of stream elements g in [g0, g0 + n) of `seed` into out[0 .. n): a partial first step through a
// buffer, whole steps straight into out, a partial last step through the buffer.
template <Kind K>
__attribute__((noinline)) void fill(uint64_t seed, uint64_t g0, int64_t n,
                                                      typename OutOf<K>::type* out) {
  FN_FP_CONTRACT_OFF_BODY
  using T = typename OutOf<K>::type;
  if (n <= 0) return;
  const Keys k(seed);
  alignas(64) T buf[kStep];
  uint64_t c = g0 >> 2;
  int64_t done = 0;
  const int64_t head = static_cast<int64_t>(g0 & 3u);
  if (head != 0 || n < kStep) {
    step_values<K>(k, c, buf);
    const int64_t m = std::min<int64_t>(n, kStep - head);
    memcpy(out, buf + head, static_cast<size_t>(m) * sizeof(T));
    done = m;
    c += kBlocks;
  }
  for (; done + kStep <= n; done += kStep, c += kBlocks) step_values<K>(k, c, out + done);
  if (done < n) {
    step_values<K>(k, c, buf);
    memcpy(out + done, buf, static_cast<size_t>(n - done) * sizeof(T));
  }
}

// Box-Muller of kBlocks given blocks: w[j * kBlocks + l] = word j of block l -> out[j * kBlocks + l]. Out of
// line so that the transform is compiled only inside this contraction-off region (a function compiled
// with contraction on would fuse it differently if it inlined box_muller_step).
__attribute__((noinline)) inline void box_muller_blocks(const uint32_t* w, float* out) {
  FN_FP_CONTRACT_OFF_BODY
  u32 wv[4][kSub];
  f32 nv[4][kSub];
  memcpy(wv, w, sizeof(wv));
  box_muller_step(wv, nv);
  memcpy(out, nv, sizeof(nv));
}

}  // namespace philox_vec
FN_FP_CONTRACT_OFF_END

// Normals of elements [begin, end) of the stream (seed, offset) into out[0 .. end - begin), any length.
FN_VINLINE void fill_normals_cpu(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, float* out) {
  philox_vec::fill<philox_vec::Kind::kNormal>(seed, offset + static_cast<uint64_t>(begin), end - begin, out);
}

// Uniforms / raw words of elements [begin, end) likewise.
FN_VINLINE void fill_uniforms_cpu(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, float* out) {
  philox_vec::fill<philox_vec::Kind::kUniform>(seed, offset + static_cast<uint64_t>(begin), end - begin, out);
}
FN_VINLINE void fill_raw_cpu(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, uint32_t* out) {
  philox_vec::fill<philox_vec::Kind::kRaw>(seed, offset + static_cast<uint64_t>(begin), end - begin, out);
}

}  // namespace fastnoise
