// Selection of mask_blend on the host, SIMD across rows: a tile of R rows ("lanes") of L keys each,
// stored key-major (keys[j * R + lane]), so every inner loop runs over the R lanes and vectorizes
// whatever the data. For each lane: the k largest keys of its row, equal keys to the lower index.
// Same rule as the CUDA and Triton kernels (bitwise threshold search, ties in index order).
#pragma once
#include <stdint.h>
#include <string.h>

namespace fastnoise {

// Rows of at most this many keys use rank counting (L^2 lane-vector compares) instead of the search.
constexpr int64_t kRankCountMax = 16;

// sel[j * R + lane] = 1 when key j of row `lane` is among the k largest of its row.
template <typename K, int R>
inline void select_lanes(const K* __restrict__ keys, int64_t L, int64_t k, uint8_t* __restrict__ sel) {
  if (k >= L) {
    memset(sel, 1, L * R);
    return;
  }
  if (k <= 0) {
    memset(sel, 0, L * R);
    return;
  }
  if (L <= kRankCountMax) {
    // rank of j = #{i: key_i > key_j} + #{i < j: key_i == key_j}; kept when rank < k
    for (int64_t j = 0; j < L; ++j) {
      const K* __restrict__ kj = keys + j * R;
      K rank[R] = {};
      for (int64_t i = 0; i < j; ++i) {
        const K* __restrict__ ki = keys + i * R;
        for (int l = 0; l < R; ++l) rank[l] += ki[l] >= kj[l];
      }
      for (int64_t i = j + 1; i < L; ++i) {
        const K* __restrict__ ki = keys + i * R;
        for (int l = 0; l < R; ++l) rank[l] += ki[l] > kj[l];
      }
      for (int l = 0; l < R; ++l) sel[j * R + l] = rank[l] < static_cast<K>(k);
    }
    return;
  }
  // thr = the k-th largest key of each row: the largest value with count(keys >= thr) >= k, bit by bit.
  // Bits above the highest bit in which the keys of the tile differ are the same for every key and
  // every lane's threshold: they are set at once.
  constexpr int kBits = 8 * sizeof(K);
  K all_and = ~K(0), all_or = 0;
  for (int64_t i = 0; i < L * R; ++i) {
    all_and &= keys[i];
    all_or |= keys[i];
  }
  const K differ = all_and ^ all_or;
  int top = kBits - 1;
  while (top >= 0 && !((differ >> top) & 1)) --top;
  const K common = top + 1 >= kBits ? K(0) : (all_and >> (top + 1)) << (top + 1);
  K thr[R];
  for (int l = 0; l < R; ++l) thr[l] = common;
  const K kk = static_cast<K>(k);
  for (int b = top; b >= 0; --b) {
    const K bit = K(1) << b;
    K cand[R], cnt[R] = {};
    for (int l = 0; l < R; ++l) cand[l] = thr[l] | bit;
    for (int64_t j = 0; j < L; ++j) {
      const K* __restrict__ kj = keys + j * R;
      for (int l = 0; l < R; ++l) cnt[l] += kj[l] >= cand[l];
    }
    for (int l = 0; l < R; ++l) thr[l] = cnt[l] >= kk ? cand[l] : thr[l];
  }
  K take[R] = {}, eqs[R] = {};
  for (int64_t j = 0; j < L; ++j) {
    const K* __restrict__ kj = keys + j * R;
    for (int l = 0; l < R; ++l) take[l] += kj[l] > thr[l];
  }
  for (int l = 0; l < R; ++l) take[l] = kk - take[l];  // ties to keep, lowest index first
  for (int64_t j = 0; j < L; ++j) {
    const K* __restrict__ kj = keys + j * R;
    for (int l = 0; l < R; ++l) {
      const K e = kj[l] == thr[l];
      sel[j * R + l] = (kj[l] > thr[l]) | (e & (eqs[l] < take[l]));
      eqs[l] += e;
    }
  }
}

}  // namespace fastnoise
