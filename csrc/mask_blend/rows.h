// CPU selection of mask_blend along contiguous float32 rows (dim = the last axis, inner == 1), vectorized
// within the row (native vectors, csrc/simd_native.h). Same rule as select.h / the other backends: the k
// largest keys (keys.h) of a row, equal keys at the threshold to the lower index; the masks are identical.
//
// top-k (rows of L > 16 keys): the exact k-th largest key T of a row is found by
//  1. a bracket [lo, hi) around the previous row's threshold (rows of one tensor are alike), counted in the
//     pass that computes the keys: when #(key >= hi) < k <= #(key >= lo), T lies in the bracket;
//  2. compaction of the keys in the bracket (few: the bracket width adapts to keep them between ~16 and
//     ~96) with their indices, in index order;
//  3. a bitwise search for T among them (MSB first: the largest t with #(key >= t) >= rank), vectorized;
//  a row whose bracket misses runs the same bitwise search over all its keys (correct for any data; only
//  slower). Ties: take = k - #(key > T) keys equal to T are kept, lowest index first; the index limit is
//  read from the compacted (index-ordered) candidates. Then one blend pass writes out and mask.
// The bracket state only decides which path finds T, never the result: every mask is the exact top-k.
//
// N:M (groups of M <= 16 consecutive keys): kLanes groups at a time, transposed through a small buffer so
// that lane g holds group g; ranks by pairwise compares across the M key vectors (i < j: i outranks j when
// key_i >= key_j), kept when rank < N.
#pragma once
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "mask_blend/keys.h"
#include "simd_native.h"

namespace fastnoise {
namespace mb_rows {

using nat::f32;
using nat::i32;
using nat::u32;
constexpr int W = nat::kLanes;
typedef uint8_t u8w __attribute__((vector_size(W)));

FN_VINLINE u32 load_u32(const uint32_t* p) {
  u32 v;
  memcpy(&v, p, sizeof v);
  return v;
}
FN_VINLINE f32 load_f32(const float* p) {
  f32 v;
  memcpy(&v, p, sizeof v);
  return v;
}
FN_VINLINE void store(uint32_t* p, u32 v) { memcpy(p, &v, sizeof v); }
FN_VINLINE void store(float* p, f32 v) { memcpy(p, &v, sizeof v); }

// keys.h's score_key on a vector (abs or signed score; NaN -> all ones)
template <bool kSigned>
FN_VINLINE u32 keys_of(f32 x) {
  const u32 b = (u32)x;
  const u32 mag = b & 0x7FFFFFFFu;
  u32 k;
  if (kSigned) {
    const i32 neg = ((b >> 31) != 0) & (mag != 0);
    k = neg ? ~b : (mag | 0x80000000u);
  } else {
    k = mag;
  }
  return (mag > 0x7F800000u) ? (u32{} + 0xFFFFFFFFu) : k;
}

FN_VINLINE uint32_t hsum(i32 v) {
  int32_t s = 0;
  for (int l = 0; l < W; ++l) s += v[l];
  return static_cast<uint32_t>(s);
}

// #(keys[0 .. n) >= t); n a multiple of W (padding keys are 0 and t > 0).
FN_VINLINE uint32_t count_ge(const uint32_t* keys, int64_t n, uint32_t t) {
  i32 c0 = {}, c1 = {};
  const u32 tv = u32{} + t;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    c0 -= (i32)(load_u32(keys + j) >= tv);
    c1 -= (i32)(load_u32(keys + j + W) >= tv);
  }
  for (; j < n; j += W) c0 -= (i32)(load_u32(keys + j) >= tv);
  return hsum(c0 + c1);
}

// The r-th largest (1 <= r <= n) of keys[0 .. n): the largest t with #(key >= t) >= r, bit by bit from the
// highest bit in which the keys differ. keys is padded with zeros to a multiple of W.
inline uint32_t kth_largest(const uint32_t* keys, int64_t n, int64_t n_padded, uint32_t r) {
  uint32_t all_and = ~0u, all_or = 0;
  for (int64_t i = 0; i < n; ++i) {
    all_and &= keys[i];
    all_or |= keys[i];
  }
  const uint32_t differ = all_and ^ all_or;
  if (differ == 0) return all_and;
  const int top = 31 - __builtin_clz(differ);
  uint32_t thr = top == 31 ? 0u : (all_and >> (top + 1)) << (top + 1);
  for (int b = top; b >= 0; --b) {
    const uint32_t cand = thr | (1u << b);
    if (count_ge(keys, n_padded, cand) >= r) thr = cand;
  }
  return thr;
}

// Per-thread bracket state of the top-k search.
struct Bracket {
  uint32_t t = 0;         // the previous row's threshold
  uint32_t w = 1u << 20;  // half width of the bracket around it
  bool have = false;
};

// Work buffers of one thread for rows of up to L keys.
struct RowScratch {
  uint32_t* keys;      // [L rounded up to W]
  uint32_t* cand_key;  // [L rounded up to W]
  int32_t* cand_idx;   // [L]
};

// 0 / -1 lanes -> 0 / 1 bytes
FN_VINLINE void write_bytes(bool* dst, i32 sel) {
  const u8w b = __builtin_convertvector(sel & 1, u8w);
  memcpy(dst, &b, W);
}

// out = keep ? z : za, mask = keep for keys >= T, or > T and == T up to index lim (ties).
template <bool kTies>
FN_VINLINE void blend_row(const float* z, const float* za, float* out, bool* mask, const uint32_t* keys, int64_t L,
                          uint32_t T, int64_t lim) {
  const u32 tv = u32{} + T;
  const i32 limv = i32{} + static_cast<int32_t>(std::min<int64_t>(lim, INT32_MAX));
  i32 idx;
  for (int l = 0; l < W; ++l) idx[l] = l;
  int64_t j = 0;
  for (; j + W <= L; j += W, idx += W) {
    const u32 kv = load_u32(keys + j);
    i32 sel;
    if (kTies) {
      sel = (kv > tv) | ((kv == tv) & (idx <= limv));
    } else {
      sel = (i32)(kv >= tv);
    }
    store(out + j, sel ? load_f32(z + j) : load_f32(za + j));
    write_bytes(mask + j, sel);
  }
  for (; j < L; ++j) {
    const bool s = keys[j] > T || (keys[j] == T && (!kTies || j <= lim));
    out[j] = s ? z[j] : za[j];
    mask[j] = s;
  }
}

// Top-k of one contiguous float32 row (0 < k < L).
template <bool kSigned>
inline void topk_row(const float* z, const float* za, float* out, bool* mask, int64_t L, int64_t k,
                     const RowScratch& s, Bracket& br) {
  const int64_t Lv = L / W * W, Lp = (L + W - 1) / W * W;
  uint32_t* keys = s.keys;
  const uint32_t lo = br.have ? (br.t > br.w ? br.t - br.w : 0u) : 0u;
  const uint32_t hi = br.have ? (br.t > 0xFFFFFFFFu - br.w ? 0xFFFFFFFFu : br.t + br.w) : 0xFFFFFFFFu;
  // 1. keys, and the counts at the bracket ends
  {
    const u32 lov = u32{} + lo, hiv = u32{} + hi;
    i32 clo = {}, chi = {};
    for (int64_t j = 0; j < Lv; j += W) {
      const u32 kv = keys_of<kSigned>(load_f32(za + j));
      store(keys + j, kv);
      clo -= (i32)(kv >= lov);
      chi -= (i32)(kv >= hiv);
    }
    uint32_t n_lo = hsum(clo), n_hi = hsum(chi);
    for (int64_t j = Lv; j < L; ++j) {
      keys[j] = score_key(za[j], kSigned);
      n_lo += keys[j] >= lo;
      n_hi += keys[j] >= hi;
    }
    for (int64_t j = L; j < Lp; ++j) keys[j] = 0;
    uint32_t T;
    int64_t lim = L;  // ties: keys == T kept up to this index (L: all of them)
    const uint32_t kk = static_cast<uint32_t>(k);
    if (br.have && n_hi < kk && kk <= n_lo) {
      // 2. candidates in [lo, hi), index order
      const u32 span = u32{} + (hi - lo);
      int64_t C = 0;
      for (int64_t j = 0; j < Lv; j += W) {
        uint32_t m = nat::movemask((i32)((load_u32(keys + j) - lov) < span));
        while (m) {
          const int l = __builtin_ctz(m);
          m &= m - 1;
          s.cand_key[C] = keys[j + l];
          s.cand_idx[C++] = static_cast<int32_t>(j + l);
        }
      }
      for (int64_t j = Lv; j < L; ++j) {
        if (keys[j] - lo < hi - lo) {
          s.cand_key[C] = keys[j];
          s.cand_idx[C++] = static_cast<int32_t>(j);
        }
      }
      const int64_t Cp = (C + W - 1) / W * W;
      for (int64_t j = C; j < Cp; ++j) s.cand_key[j] = 0;
      // 3. the rank (k - n_hi) key among them
      T = kth_largest(s.cand_key, C, Cp, kk - n_hi);
      uint32_t gt = n_hi, eq = 0;
      for (int64_t c = 0; c < C; ++c) {
        gt += s.cand_key[c] > T;
        eq += s.cand_key[c] == T;
      }
      const uint32_t take = kk - gt;
      if (take < eq) {
        uint32_t seen = 0;
        for (int64_t c = 0; c < C; ++c) {
          if (s.cand_key[c] == T && ++seen == take) {
            lim = s.cand_idx[c];
            break;
          }
        }
      }
      // keep the candidates between ~16 and ~96
      if (C > 96) br.w -= br.w / 4;
      if (C < 16) br.w = br.w > (1u << 30) ? br.w : br.w + br.w / 2 + 1;
    } else {
      // the bracket missed (or the first row): the search over every key
      T = kth_largest(keys, L, Lp, kk);
      uint32_t gt = 0, eq = 0;
      for (int64_t j = 0; j < L; ++j) {
        gt += keys[j] > T;
        eq += keys[j] == T;
      }
      const uint32_t take = kk - gt;
      if (take < eq) {
        uint32_t seen = 0;
        for (int64_t j = 0; j < L; ++j) {
          if (keys[j] == T && ++seen == take) {
            lim = j;
            break;
          }
        }
      }
      if (br.have) br.w = br.w > (1u << 28) ? 0xFFFFFFFFu : br.w * 4;
    }
    br.t = T;
    br.have = true;
    // 4. blend
    if (lim < L) {
      blend_row<true>(z, za, out, mask, keys, L, T, lim);
    } else {
      blend_row<false>(z, za, out, mask, keys, L, T, lim);
    }
  }
}

// N:M on a contiguous float32 run of `groups` groups of M keys (n < M <= 16), W groups at a time.
template <bool kSigned>
inline void nm_run(const float* z, const float* za, float* out, bool* mask, int64_t groups, int M, int n) {
  alignas(64) uint32_t kt[16][W];  // kt[j][g]: key j of group g
  alignas(64) uint8_t st[16 * W];  // selection in element order
  int64_t g0 = 0;
  for (; g0 < groups; g0 += W) {
    const int ng = static_cast<int>(std::min<int64_t>(W, groups - g0));
    const float* zab = za + g0 * M;
    for (int g = 0; g < W; ++g) {
      const int gg = std::min(g, ng - 1);  // pad a partial block with its last group
      for (int j = 0; j < M; ++j) kt[j][g] = score_key(zab[gg * M + j], kSigned);
    }
    u32 kv[16];
    i32 rank[16];
    for (int j = 0; j < M; ++j) {
      kv[j] = load_u32(kt[j]);
      rank[j] = i32{};
    }
    for (int i = 0; i < M; ++i)
      for (int j = i + 1; j < M; ++j) {
        const i32 c = (i32)(kv[i] >= kv[j]);  // i outranks j (ties to the lower index)
        rank[j] -= c;                         // +1 where c
        rank[i] += c + 1;                     // +1 where !c
      }
    for (int j = 0; j < M; ++j) {
      const i32 sel = rank[j] < n;
      for (int g = 0; g < W; ++g) st[g * M + j] = static_cast<uint8_t>(sel[g] & 1);
    }
    const int64_t e0 = g0 * M, ne = static_cast<int64_t>(ng) * M;
    for (int64_t e = 0; e < ne; ++e) {
      const bool s = st[e];
      out[e0 + e] = s ? z[e0 + e] : za[e0 + e];
    }
    memcpy(mask + e0, st, static_cast<size_t>(ne));
  }
}

}  // namespace mb_rows
}  // namespace fastnoise
