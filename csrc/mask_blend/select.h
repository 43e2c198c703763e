// Per-row selection of mask_blend on the host: the k largest keys of a row, ties to the lower index.
// Used by the CPU kernel (csrc/mask_blend/cpu.cpp); the same rule is implemented by the CUDA and
// Triton kernels with the same 32/64-step bitwise threshold search.
#pragma once
#include <stdint.h>
#include <string.h>

namespace fastnoise {

// Rows of at most this many keys use rank counting (O(L^2), branch-free) instead of the search.
constexpr int64_t kRankCountMax = 16;

template <typename K>
inline uint32_t count_ge(const K* __restrict__ keys, int64_t n, K cand) {
  uint32_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += keys[i] >= cand;
  return c;
}

template <typename K>
inline uint32_t count_gt(const K* __restrict__ keys, int64_t n, K thr) {
  uint32_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += keys[i] > thr;
  return c;
}

// sel[i] = 1 for the k largest keys of keys[0..L) (equal keys: lower index first), else 0.
// work: scratch of L keys.
template <typename K>
inline void select_row(const K* __restrict__ keys, int64_t L, int64_t k, K* __restrict__ work,
                       uint8_t* __restrict__ sel) {
  if (k >= L) {
    memset(sel, 1, L);
    return;
  }
  if (k <= 0) {
    memset(sel, 0, L);
    return;
  }
  if (L <= kRankCountMax) {
    for (int64_t j = 0; j < L; ++j) {
      const K kj = keys[j];
      int64_t rank = 0;
      for (int64_t i = 0; i < L; ++i) rank += (keys[i] > kj) | ((keys[i] == kj) & (i < j));
      sel[j] = rank < k;
    }
    return;
  }
  // The threshold thr = the k-th largest key: the largest value with count(keys >= thr) >= k,
  // found bit by bit from the top. Every 8 bits the candidates are compacted to the keys that
  // share thr's fixed high bits (the others are known to be above or below).
  constexpr int kBits = 8 * sizeof(K);
  K thr = 0;
  const K* cur = keys;
  int64_t n = L;
  int64_t above = 0;
  for (int b = kBits - 1; b >= 0; --b) {
    const K cand = thr | (K(1) << b);
    if (above + static_cast<int64_t>(count_ge(cur, n, cand)) >= k) thr = cand;
    if (b > 0 && (b % 8) == 0 && n > 32) {
      const K hi = thr >> b;
      int64_t j = 0, a = 0;
      for (int64_t i = 0; i < n; ++i) {  // in place when cur == work: j <= i
        const K key = cur[i];
        const K h = key >> b;
        work[j] = key;
        j += h == hi;
        a += h > hi;
      }
      above += a;
      n = j;
      cur = work;
    }
  }
  const int64_t take = k - above - static_cast<int64_t>(count_gt(cur, n, thr));  // ties to keep
  int64_t eqs = 0;
  for (int64_t i = 0; i < L; ++i) {
    const K key = keys[i];
    const int64_t e = key == thr;
    sel[i] = (key > thr) | (e & (eqs < take));
    eqs += e;
  }
}

}  // namespace fastnoise
