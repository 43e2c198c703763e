// CPU kernels of the sparse ternary projection (layout and generation rule: ternary.h).
//
// No multiplications: every output is a signed sum of input vectors (+1 / -1 entries of P), then one
// multiplication by `scale`. The inner loop `signed_sum` adds whole contiguous vectors:
//   ternary_project     rows blocked by kRows and transposed, so entry q of P adds row q of the block
//   ternary_project_t   the same with the transposed lists (entry p of column q)
//   ternary_conv_project >= kLaneMinUnits (image, group) units: `conv_lanes`, one vector = the same pixel of
//                        kVW units (input transposed and zero-padded once), register-blocked over kLanePos
//                        output columns, so every tap is one aligned vector add (`lane_sum`).
//                        Fewer units: per (unit, output row p of P) and kernel offset (i, j): the channel
//                        planes x[c] with P[p, c, i, j] = +1 (-1) are added (subtracted) into one plane,
//                        which is then added, shifted by (i, j) with stride / padding / dilation, into the
//                        output.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <memory>
#include <utility>
#include <vector>

#include "common.h"
#include "simd.h"
#include "ternary_projection/checks.h"
#include "ternary_projection/ternary.h"

namespace fastnoise {
namespace {

// Signed lists in CSR form: list r adds base[idx[i]] for i in [start[2r], start[2r+1]) and subtracts
// for i in [start[2r+1], start[2r+2]).
struct SignLists {
  std::vector<int64_t> idx;
  std::vector<int64_t> start{0};
};

template <typename T>
constexpr int kChunk = 4 * kVW<T>;  // elements per chunk: 64 floats / 32 doubles

// out[0 .. NV*kVW) = sum_{plus} base[o + e] - sum_{minus} base[o + e], NV vectors per entry, two entries
// per step (one accumulator add per two loads).
template <typename T, int NV>
inline void signed_sum_vec(const T* base, const int64_t* pl, int64_t np, const int64_t* mi, int64_t nm, T* out) {
  using V = typename Vec<T>::type;
  constexpr int VW = kVW<T>;
  V acc[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) acc[j] = V{};
  int64_t i = 0;
  for (; i + 2 <= np; i += 2) {
    const T *a = base + pl[i], *b = base + pl[i + 1];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[j] += vload(a + j * VW) + vload(b + j * VW);
  }
  if (i < np) {
    const T* a = base + pl[i];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[j] += vload(a + j * VW);
  }
  i = 0;
  for (; i + 2 <= nm; i += 2) {
    const T *a = base + mi[i], *b = base + mi[i + 1];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[j] -= vload(a + j * VW) + vload(b + j * VW);
  }
  if (i < nm) {
    const T* a = base + mi[i];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[j] -= vload(a + j * VW);
  }
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) *reinterpret_cast<V*>(out + j * VW) = acc[j];
}

// Scalar tail (fewer than one vector).
template <typename T>
inline void signed_sum_scalar(const T* base, const int64_t* pl, int64_t np, const int64_t* mi, int64_t nm, int64_t n,
                              T* out) {
  for (int64_t e = 0; e < n; ++e) out[e] = T(0);
  for (int64_t i = 0; i < np; ++i)
    for (int64_t e = 0; e < n; ++e) out[e] += base[pl[i] + e];
  for (int64_t i = 0; i < nm; ++i)
    for (int64_t e = 0; e < n; ++e) out[e] -= base[mi[i] + e];
}

// Any length n <= kChunk: whole vectors, then the scalar tail.
template <typename T>
inline void signed_sum_chunk(const T* base, const int64_t* pl, int64_t np, const int64_t* mi, int64_t nm, int64_t n,
                             T* out) {
  constexpr int VW = kVW<T>;
  switch (n / VW) {
    case 4: signed_sum_vec<T, 4>(base, pl, np, mi, nm, out); break;
    case 3: signed_sum_vec<T, 3>(base, pl, np, mi, nm, out); break;
    case 2: signed_sum_vec<T, 2>(base, pl, np, mi, nm, out); break;
    case 1: signed_sum_vec<T, 1>(base, pl, np, mi, nm, out); break;
    default: break;
  }
  const int64_t done = n / VW * VW;
  if (done < n) signed_sum_scalar<T>(base + done, pl, np, mi, nm, n - done, out + done);
}

// List r of `lists` over vectors of length n starting at `base` (offsets in elements).
template <typename T>
inline void signed_sum(const T* base, const SignLists& lists, int64_t r, int64_t n, T* out) {
  const int64_t* idx = lists.idx.data();
  const int64_t s0 = lists.start[2 * r], s1 = lists.start[2 * r + 1], s2 = lists.start[2 * r + 2];
  constexpr int L = kChunk<T>;
  for (int64_t e0 = 0; e0 < n; e0 += L) {
    signed_sum_chunk<T>(base + e0, idx + s0, s1 - s0, idx + s1, s2 - s1, std::min<int64_t>(L, n - e0), out + e0);
  }
}

const uint32_t* packed_words(const at::Tensor& packed) {
  return reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
}

// Lists over the rows of P: list p holds stride * q for the entries q of row p (projection).
SignLists row_lists(const at::Tensor& packed, int64_t k, int64_t d, int64_t stride) {
  const uint32_t* P = packed_words(packed);
  const int64_t W = ternary_words(d);
  SignLists l;
  l.idx.reserve(static_cast<size_t>(k * d * 2 / 5 + 16));
  for (int64_t p = 0; p < k; ++p) {
    for (int sign = 1; sign >= -1; sign -= 2) {
      for (int64_t q = 0; q < d; ++q)
        if (ternary_at(P, k, W, p, q) == sign) l.idx.push_back(q * stride);
      l.start.push_back(static_cast<int64_t>(l.idx.size()));
    }
  }
  return l;
}

// Lists over the columns of P: list q holds stride * p for the entries p of column q (transpose).
SignLists col_lists(const at::Tensor& packed, int64_t k, int64_t d, int64_t stride) {
  const uint32_t* P = packed_words(packed);
  const int64_t W = ternary_words(d);
  SignLists l;
  for (int64_t q = 0; q < d; ++q) {
    for (int sign = 1; sign >= -1; sign -= 2) {
      for (int64_t p = 0; p < k; ++p)
        if (ternary_at(P, k, W, p, q) == sign) l.idx.push_back(p * stride);
      l.start.push_back(static_cast<int64_t>(l.idx.size()));
    }
  }
  return l;
}

// Conv lists, channels in blocks of `cb`: list ((blk * k + p) * KK + ij) holds plane * c for the channels
// c of block blk with P[p, c*KK + ij] = +1 (then those with -1).
SignLists conv_lists(const at::Tensor& packed, int64_t k, int64_t cg, int64_t kk, int64_t plane, int64_t cb) {
  const uint32_t* P = packed_words(packed);
  const int64_t d = cg * kk, W = ternary_words(d);
  SignLists l;
  for (int64_t c0 = 0; c0 < cg; c0 += cb) {
    const int64_t c1 = std::min(cg, c0 + cb);
    for (int64_t p = 0; p < k; ++p) {
      for (int64_t ij = 0; ij < kk; ++ij) {
        for (int sign = 1; sign >= -1; sign -= 2) {
          for (int64_t c = c0; c < c1; ++c)
            if (ternary_at(P, k, W, p, c * kk + ij) == sign) l.idx.push_back(c * plane);
          l.start.push_back(static_cast<int64_t>(l.idx.size()));
        }
      }
    }
  }
  return l;
}

// out[N, m] = scale * (signed sums of the columns of in[N, n] given by `lists`, one list per output column).
template <typename T>
void rows_kernel(const T* in, int64_t N, int64_t n, const SignLists& lists, int64_t m, T scale, T* out) {
  constexpr int R = kChunk<T>;
  const int64_t blocks = (N + R - 1) / R;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    VecBuffer<T> tin(n * R);  // 64-byte aligned rows
    T acc[R];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * R, rn = std::min<int64_t>(R, N - r0);
      for (int64_t r = 0; r < R; ++r)  // transpose the block: tin[j][r] = in[r0 + r][j]
        for (int64_t j = 0; j < n; ++j) tin[j * R + r] = r < rn ? in[(r0 + r) * n + j] : T(0);
      for (int64_t c = 0; c < m; ++c) {
        signed_sum<T>(tin.data(), lists, c, R, acc);
        for (int64_t r = 0; r < rn; ++r) out[(r0 + r) * m + c] = acc[r] * scale;
      }
    }
  });
}

// ---- conv projection, lane kernel: one vector = the same pixel of kVW units (unit = image, group) ----
// Xp[c % cc][Hp][Wp][lane] = channel c (of its group) of unit ub*kVW + lane of the unit block ub being
// computed, zero-padded (Hp = H + 2ph, Wp = W + 2pw; lanes past the last unit are 0). Every tap (c, i, j)
// of every output position is then one aligned vector at base(oh, ow) + off(c, i, j), so padding, stride
// and dilation need no branches.

// Lists per (channel block cblk, row p): off(c, i, j) = ((c % cc)*Hp*Wp + i*dh*Wp + j*dw) * kVW of the taps
// of block cblk with P[p, c*kk + i*kw + j] = +1 (range 2r), then -1 (range 2r+1); r = cblk * k + p. Channel
// blocks of cb channels; Xp holds one chunk of cc channels (a multiple of cb) at a time.
struct LaneLists {
  std::vector<int32_t> idx;
  std::vector<int64_t> start{0};
};

LaneLists lane_lists(const at::Tensor& packed, int64_t k, int64_t cg, int64_t kh, int64_t kw, int64_t dh,
                     int64_t dw, int64_t Hp, int64_t Wp, int64_t vw, int64_t cb, int64_t cc) {
  const uint32_t* P = packed_words(packed);
  const int64_t kk = kh * kw, d = cg * kk, W = ternary_words(d);
  std::vector<int64_t> tap(static_cast<size_t>(kk));  // (i*dh*Wp + j*dw) * vw
  for (int64_t ij = 0; ij < kk; ++ij) tap[ij] = ((ij / kw) * dh * Wp + (ij % kw) * dw) * vw;
  LaneLists l;
  l.idx.reserve(static_cast<size_t>(k * d * 2 / 5 + 16));
  for (int64_t c0 = 0; c0 < cg; c0 += cb) {
    const int64_t q0 = c0 * kk, q1 = std::min(cg, c0 + cb) * kk;  // entries [q0, q1) of each row
    for (int64_t p = 0; p < k; ++p) {
      for (int plane = 0; plane < 2; ++plane) {  // plane 0: +1 bits, plane 1: -1 bits
        const uint32_t* row = P + (plane * k + p) * W;
        for (int64_t w = q0 >> 5; w <= (q1 - 1) >> 5; ++w) {
          uint32_t m = row[w];
          if (w == q0 >> 5) m &= ~0u << (q0 & 31);
          if (w == (q1 - 1) >> 5 && (q1 & 31)) m &= ~0u >> (32 - (q1 & 31));
          for (; m; m &= m - 1) {
            const int64_t q = w * 32 + __builtin_ctz(m), c = q / kk;
            l.idx.push_back(static_cast<int32_t>((c % cc) * Hp * Wp * vw + tap[q % kk]));
          }
        }
        l.start.push_back(static_cast<int64_t>(l.idx.size()));
      }
    }
  }
  return l;
}

// acc[e] (NV vectors, in memory; 0 if init) += sum_{plus} base[o + e*step] - sum_{minus} base[o + e*step];
// two entries per step. Each Vec is kParts native vectors (csrc/simd.h), so the NV * kParts accumulators are
// native registers; callers keep NV <= kLaneMaxPos so that they fit.
template <typename T, int NV, bool Unit>
inline void lane_sum(bool init, const T* base, int64_t step_, const int32_t* pl, int64_t np, const int32_t* mi,
                     int64_t nm, T* acc_io) {
  using N = typename NVec<T>::type;
  constexpr int VW = kVW<T>, NW = kNW<T>, P = kParts<T>, M = NV * P;
  const int64_t step = Unit ? VW : step_;  // stride 1: constant displacements
  int64_t off[M];                          // native vector m = part m % P of position m / P
#pragma GCC unroll 16
  for (int m = 0; m < M; ++m) off[m] = (m / P) * step + (m % P) * NW;
  N acc[M];
#pragma GCC unroll 16
  for (int m = 0; m < M; ++m) acc[m] = init ? N{} : nload(acc_io + m * NW);
  int64_t i = 0;
  for (; i + 2 <= np; i += 2) {
    const T *a = base + pl[i], *b = base + pl[i + 1];
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) acc[m] += nload(a + off[m]) + nload(b + off[m]);
  }
  if (i < np) {
    const T* a = base + pl[i];
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) acc[m] += nload(a + off[m]);
  }
  for (i = 0; i + 2 <= nm; i += 2) {
    const T *a = base + mi[i], *b = base + mi[i + 1];
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) acc[m] -= nload(a + off[m]) + nload(b + off[m]);
  }
  if (i < nm) {
    const T* a = base + mi[i];
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) acc[m] -= nload(a + off[m]);
  }
#pragma GCC unroll 16
  for (int m = 0; m < M; ++m) nstore(acc_io + m * NW, acc[m]);
}

constexpr int kLanePos = 8;  // output positions (along a row) per register block
// positions per lane_sum call: all kLanePos with 32 vector registers; with 16, at most 12 native accumulators
// (the block is then summed in pieces; each element's sum is the same)
template <typename T>
constexpr int kLaneMaxPos = kNatRegs >= 32 ? kLanePos : std::max(1, 12 / kParts<T>);
constexpr int64_t kLaneChunk = 655360;  // bytes of transposed input planes per task (with Yl: in L2)
// fewer units than this: the per-unit kernel below (lanes would be mostly empty)
template <typename T>
constexpr int64_t kLaneMinUnits = kVW<T> / 2;

template <typename T, bool Unit>
inline void lane_sum_n(int n, bool init, const T* base, int64_t step, const int32_t* pl, int64_t np,
                       const int32_t* mi, int64_t nm, T* acc_io) {
  constexpr int MP = kLaneMaxPos<T>;
  for (; n > MP; n -= MP) {
    lane_sum<T, MP, Unit>(init, base, step, pl, np, mi, nm, acc_io);
    base += MP * (Unit ? kVW<T> : step);
    acc_io += MP * kVW<T>;
  }
  switch (n) {
    case 8: lane_sum<T, std::min(8, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 7: lane_sum<T, std::min(7, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 6: lane_sum<T, std::min(6, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 5: lane_sum<T, std::min(5, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 4: lane_sum<T, std::min(4, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 3: lane_sum<T, std::min(3, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    case 2: lane_sum<T, std::min(2, MP), Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
    default: lane_sum<T, 1, Unit>(init, base, step, pl, np, mi, nm, acc_io); break;
  }
}

// y [U*k, Ho, Wo] (U = B*groups units, unit u = x[u*cg .. u*cg + cg) of x viewed as [U*cg, H, W]).
// Parallel over (unit block ub, range of rows p) tasks (more than one range only when there are fewer unit
// blocks than threads), each with a working set in L2: for each chunk of cc channels: transpose it into Xp
// (<= kLaneChunk bytes); for each output row oh, chunk of <= kLanePos output columns, channel block of cb
// channels (its Xp slab stays in L1), row p: Yl[p][oh][chunk][lane] += the block's taps (lane_sum). Then
// y[u, p] = scale * Yl[p][..][lane], transposed back in registers.
template <typename T>
void conv_lanes(const T* X, int64_t U, int64_t cg, int64_t H, int64_t Wd, const at::Tensor& packed, int64_t k,
                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                int64_t Ho, int64_t Wo, T scale, T* Y) {
  using V = typename Vec<T>::type;
  constexpr int VW = kVW<T>;
  const int64_t Hp = H + 2 * ph, Wp = Wd + 2 * pw, HW = H * Wd, L = Ho * Wo, kL = k * L;
  const int64_t plane = Hp * Wp * VW, nub = (U + VW - 1) / VW;
  const int64_t tsz = static_cast<int64_t>(sizeof(T));
  // channel block: its slab for one column chunk (kh rows x the chunk's input columns) fits in ~24 KiB of L1
  const int64_t span = ((kLanePos - 1) * sw + (kw - 1) * dw + 1) * kh;
  const int64_t cb = std::min(cg, std::max<int64_t>(1, 24576 / (span * VW * tsz)));
  // channel chunk: whole channel blocks
  const int64_t cc = std::min(cg, std::max<int64_t>(1, kLaneChunk / (plane * tsz * cb)) * cb);
  TORCH_CHECK(cc * plane <= INT32_MAX, "ternary_conv_project: input planes too large for the CPU kernel");
  const LaneLists lists = lane_lists(packed, k, cg, kh, kw, dh, dw, Hp, Wp, VW, cb, cc);
  const int32_t* idx = lists.idx.data();
  const int64_t* st = lists.start.data();
  const int64_t nth = at::get_num_threads();
  const int64_t psplit = std::min<int64_t>(k, (nth + nub - 1) / nub), prange = (k + psplit - 1) / psplit;

  // channel c of unit block ub, transposed and zero-padded into dst (lanes past U are 0)
  auto put = [&](int64_t ub, int64_t c, T* dst) {
    std::fill(dst, dst + ph * Wp * VW, T(0));
    std::fill(dst + (ph + H) * Wp * VW, dst + plane, T(0));
    for (int64_t h = 0; h < H; ++h) {
      T* r = dst + (h + ph) * Wp * VW;
      std::fill(r, r + pw * VW, T(0));
      std::fill(r + (pw + Wd) * VW, r + Wp * VW, T(0));
    }
    const int64_t nl = std::min<int64_t>(VW, U - ub * VW);
    const T* src = X + (ub * VW * cg + c) * HW;  // lane l at src + l * cg * HW
    int64_t hw = 0, h = 0, w = 0;               // (h, w) of position hw
    for (; hw + VW <= HW; hw += VW) {           // tiles of VW positions, transposed in registers
      V r[VW];
#pragma GCC unroll 16
      for (int64_t l = 0; l < VW; ++l) r[l] = l < nl ? vload(src + l * cg * HW + hw) : V{};
      transpose_vectors<T>(r);  // r[j] = position hw + j of every lane
#pragma GCC unroll 16
      for (int64_t j = 0; j < VW; ++j) {
        *reinterpret_cast<V*>(dst + ((h + ph) * Wp + w + pw) * VW) = r[j];
        if (++w == Wd) w = 0, ++h;
      }
    }
    for (; hw < HW; ++hw) {
      T* o = dst + ((h + ph) * Wp + w + pw) * VW;
      for (int64_t l = 0; l < VW; ++l) o[l] = l < nl ? src[l * cg * HW + hw] : T(0);
      if (++w == Wd) w = 0, ++h;
    }
  };

  at::parallel_for(0, nub * psplit, 1, [&](int64_t t0, int64_t t1) {
    // 64-byte aligned: every vector load is one cache line (unaligned zmm loads split across two)
    VecBuffer<T> xp(cc * plane);      // Xp[c % cc][Hp][Wp][lane]
    VecBuffer<T> yl(prange * L * VW);  // Yl[p - p0][oh][ow][lane]
    for (int64_t t = t0; t < t1; ++t) {  // t = ub * psplit + range
      const int64_t ub = t / psplit, p0 = (t % psplit) * prange, p1 = std::min(k, p0 + prange);
      if (p0 >= p1) continue;
      for (int64_t c0 = 0; c0 < cg; c0 += cc) {
        const int64_t c1 = std::min(cg, c0 + cc);
        for (int64_t c = c0; c < c1; ++c) put(ub, c, xp.data() + (c - c0) * plane);
        for (int64_t oh = 0; oh < Ho; ++oh) {
          const T* xrow = xp.data() + oh * sh * Wp * VW;
          for (int64_t ow0 = 0; ow0 < Wo; ow0 += kLanePos) {
            const int n = static_cast<int>(std::min<int64_t>(kLanePos, Wo - ow0));
            const T* base = xrow + ow0 * sw * VW;
            for (int64_t blk = c0 / cb; blk < (c1 + cb - 1) / cb; ++blk) {
              const bool init = blk == 0;
              for (int64_t p = p0; p < p1; ++p) {
                const int64_t r = blk * k + p, s0 = st[2 * r], s1 = st[2 * r + 1], s2 = st[2 * r + 2];
                T* acc = yl.data() + ((p - p0) * L + oh * Wo + ow0) * VW;
                if (sw == 1)
                  lane_sum_n<T, true>(n, init, base, VW, idx + s0, s1 - s0, idx + s1, s2 - s1, acc);
                else
                  lane_sum_n<T, false>(n, init, base, sw * VW, idx + s0, s1 - s0, idx + s1, s2 - s1, acc);
              }
            }
          }
        }
      }
      // y[u, p0..p1) = scale * Yl, tiles of VW positions transposed in registers
      const int64_t nl = std::min<int64_t>(VW, U - ub * VW), nf_all = (p1 - p0) * L;
      for (int64_t f0 = 0; f0 < nf_all; f0 += VW) {
        const int64_t nf = std::min<int64_t>(VW, nf_all - f0);
        const T* src = yl.data() + f0 * VW;
        T* dst = Y + ub * VW * kL + p0 * L + f0;  // lane l at dst + l * kL
        V r[VW];
#pragma GCC unroll 16
        for (int64_t j = 0; j < VW; ++j) r[j] = j < nf ? vload(src + j * VW) * scale : V{};
        transpose_vectors<T>(r);  // r[l] = positions f0 .. f0 + VW of lane l
        if (nf == VW) {
          for (int64_t l = 0; l < nl; ++l) *reinterpret_cast<V*>(dst + l * kL) = r[l];
        } else {
          for (int64_t l = 0; l < nl; ++l)
            for (int64_t j = 0; j < nf; ++j) dst[l * kL + j] = r[l][j];
        }
      }
    }
  });
}

// ---- conv epilogue: z[u] [ng, L] = W_g [ng, k] y[u] [k, L] + b_g for unit u = b * groups + g ----
// Register tiles of RI rows x NC native vectors of L (csrc/simd.h: 4 x 4 zmm with AVX-512, 4 x 2 ymm with
// AVX2, so that the tile, its NC loads and the broadcast stay in the 32 / 16 vector registers): per reduction
// step NC loads of y and RI broadcasts of W for RI * NC multiply-adds; y[u] (k * L values) stays in L1 while
// all row tiles read it. Every element is b + sum_q w[q] y[q] in q order whatever the tile, so the bits do
// not depend on the ISA. (The BLAS batched GEMM runs this K = 64 shape at under half the FMA rate.)
constexpr int kEpiRows = 4;
constexpr int kEpiCols = kNatRegs >= 32 ? 4 : 2;

template <typename T, int RI, int NC>
inline void epilogue_tile(const T* yu, int64_t k, int64_t L, const T* w, const T* bias, int64_t l0, T* z) {
  using N = typename NVec<T>::type;
  constexpr int NW = kNW<T>;
  N acc[RI][NC];
#pragma GCC unroll 4
  for (int r = 0; r < RI; ++r) {
    const N b0 = nsplat<T>(bias ? bias[r] : T(0));
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = b0;
  }
  for (int64_t q = 0; q < k; ++q) {
    N yv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) yv[c] = nload(yu + q * L + l0 + c * NW);
#pragma GCC unroll 4
    for (int r = 0; r < RI; ++r) {
      const N wr = nsplat<T>(w[r * k + q]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] += wr * yv[c];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < RI; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) nstore(z + r * L + l0 + c * NW, acc[r][c]);
}

template <typename T, int RI>
inline void epilogue_rows(const T* yu, int64_t k, int64_t L, const T* w, const T* bias, T* z) {
  constexpr int NW = kNW<T>;
  int64_t l0 = 0;
  for (; l0 + kEpiCols * NW <= L; l0 += kEpiCols * NW) epilogue_tile<T, RI, kEpiCols>(yu, k, L, w, bias, l0, z);
  for (; l0 + NW <= L; l0 += NW) epilogue_tile<T, RI, 1>(yu, k, L, w, bias, l0, z);
  for (int64_t l = l0; l < L; ++l)  // columns past the last whole vector
    for (int r = 0; r < RI; ++r) {
      T s = bias ? bias[r] : T(0);
      for (int64_t q = 0; q < k; ++q) s += w[r * k + q] * yu[q * L + l];
      z[r * L + l] = s;
    }
}

// Pooled channel score of one row z[0 .. L): sum_l |z[l]| (z[l] when signed_score) / L, summed as kVW
// lane sums (lane l % kVW, in l order), then the lanes in order, then the tail past the last whole vector:
// the same bits on every ISA. (torch's mean sums in an order of its own: the two agree to rounding.)
template <typename T>
inline T pooled_score(const T* z, int64_t L, bool signed_score) {
  constexpr int VW = kVW<T>;
  T acc[VW] = {};
  int64_t l = 0;
  if (signed_score) {
    for (; l + VW <= L; l += VW)
#pragma omp simd
      for (int e = 0; e < VW; ++e) acc[e] += z[l + e];
  } else {
    for (; l + VW <= L; l += VW)
#pragma omp simd
      for (int e = 0; e < VW; ++e) acc[e] += std::abs(z[l + e]);
  }
  T s = T(0);
  for (int e = 0; e < VW; ++e) s += acc[e];
  for (; l < L; ++l) s += signed_score ? z[l] : std::abs(z[l]);
  return s / static_cast<T>(L);
}

// z (and, when S is given, the pooled score S [B, n] of every row of z while the row tile is in L1).
template <typename T>
void epilogue_run(const T* Y, const T* W, const T* Bs, int64_t B, int64_t groups, int64_t k, int64_t n, int64_t L,
                  T* Z, T* S, bool signed_score) {
  const int64_t ng = n / groups;
  at::parallel_for(0, B * groups, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t g = u % groups;
      const T* yu = Y + u * k * L;
      const T* wg = W + g * ng * k;
      const T* bg = Bs ? Bs + g * ng : nullptr;
      T* zu = Z + u * ng * L;
      T* su = S ? S + u * ng : nullptr;
      int64_t i = 0;
      for (; i + kEpiRows <= ng; i += kEpiRows) {
        epilogue_rows<T, kEpiRows>(yu, k, L, wg + i * k, bg ? bg + i : nullptr, zu + i * L);
        if (su)
          for (int64_t r = i; r < i + kEpiRows; ++r) su[r] = pooled_score(zu + r * L, L, signed_score);
      }
      for (; i < ng; ++i) {
        epilogue_rows<T, 1>(yu, k, L, wg + i * k, bg ? bg + i : nullptr, zu + i * L);
        if (su) su[i] = pooled_score(zu + i * L, L, signed_score);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> epilogue_impl(const at::Tensor& y, const at::Tensor& w,
                                                 const c10::optional<at::Tensor>& b, int64_t groups, bool pooled,
                                                 bool signed_score) {
  check_float_input("y", y, 4);
  if (math_type(y.scalar_type()) != y.scalar_type()) {  // float16 / bfloat16: computed in float32, rounded once
    const auto mt = math_type(y.scalar_type());
    const c10::optional<at::Tensor> bm = b.has_value() ? c10::optional<at::Tensor>(b->to(mt)) : c10::nullopt;
    TORCH_CHECK(w.scalar_type() == y.scalar_type(), "w must be a [n, k] tensor of y's dtype, got ", w.sizes(), " ",
                w.scalar_type());
    auto r = epilogue_impl(y.to(mt), w.to(mt), bm, groups, pooled, signed_score);
    return {std::get<0>(r).to(y.scalar_type()),
            pooled ? std::get<1>(r).to(y.scalar_type()) : std::get<1>(r)};
  }
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == y.scalar_type(), "w must be a [n, k] tensor of y's dtype, got ",
              w.sizes(), " ", w.scalar_type());
  TORCH_CHECK(groups >= 1 && w.size(0) % groups == 0 && y.size(1) == groups * w.size(1),
              "y must have groups * k = ", groups * w.size(1), " channels and groups must divide n = ", w.size(0));
  TORCH_CHECK(!b.has_value() || (b->dim() == 1 && b->size(0) == w.size(0) && b->scalar_type() == y.scalar_type()),
              "b must be a [", w.size(0), "] tensor of y's dtype");
  const int64_t B = y.size(0), k = w.size(1), n = w.size(0), L = y.size(2) * y.size(3);
  const at::Tensor yc = y.contiguous(), wc = w.contiguous();
  const at::Tensor bc = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor z = at::empty({B, n, y.size(2), y.size(3)}, y.options());
  at::Tensor s = pooled ? at::empty({B, n}, y.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "ternary_conv_epilogue", [&] {
    using T = scalar_t;
    epilogue_run<T>(yc.data_ptr<T>(), wc.data_ptr<T>(), bc.defined() ? bc.data_ptr<T>() : nullptr, B, groups, k, n,
                    L, z.data_ptr<T>(), pooled ? s.data_ptr<T>() : nullptr, signed_score);
  });
  return {z, s};
}

at::Tensor ternary_conv_epilogue_cpu(const at::Tensor& y, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                                     int64_t groups) {
  return std::get<0>(epilogue_impl(y, w, b, groups, false, false));
}

std::tuple<at::Tensor, at::Tensor> ternary_conv_epilogue_pooled_cpu(const at::Tensor& y, const at::Tensor& w,
                                                                    const c10::optional<at::Tensor>& b, int64_t groups,
                                                                    bool signed_score) {
  return epilogue_impl(y, w, b, groups, true, signed_score);
}

template <typename F>
at::Tensor run_float(const at::Tensor& x, F f) {
  const at::Tensor xc = x.to(compute_type(x)).contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "fastnoise_ternary", [&] { out = f(xc, scalar_t(0)); });
  return out.to(x.scalar_type());
}

at::Tensor ternary_generate_cpu(const at::Tensor& state, int64_t k, int64_t d) {
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  TORCH_CHECK(d >= 1, "d must be >= 1, got ", d);
  const RngState st = read_rng_state(state);
  const int64_t W = ternary_words(d);
  at::Tensor out = at::empty({2, k, W}, state.options().dtype(at::kInt));
  uint32_t* o = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  at::parallel_for(0, k * W, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ternary_word(st.seed, st.offset, i / W, i % W, d, &o[i], &o[k * W + i]);
  });
  return out;
}

at::Tensor ternary_project_cpu(const at::Tensor& x, const at::Tensor& packed, double scale) {
  check_float_input("x", x, 2);
  const int64_t N = x.size(0), d = x.size(1);
  const int64_t k = check_packed(packed, d, x);
  const at::Tensor pc = packed.contiguous();
  return run_float(x, [&](const at::Tensor& xc, auto zero) {
    using T = decltype(zero);
    at::Tensor y = at::empty({N, k}, xc.options());
    const SignLists lists = row_lists(pc, k, d, kChunk<T>);
    rows_kernel<T>(xc.data_ptr<T>(), N, d, lists, k, static_cast<T>(scale), y.data_ptr<T>());
    return y;
  });
}

at::Tensor ternary_project_t_cpu(const at::Tensor& g, const at::Tensor& packed, int64_t d, double scale) {
  check_float_input("g", g, 2);
  const int64_t N = g.size(0);
  const int64_t k = check_packed(packed, d, g);
  TORCH_CHECK(g.size(1) == k, "g must have k = ", k, " columns, got ", g.size(1));
  const at::Tensor pc = packed.contiguous();
  return run_float(g, [&](const at::Tensor& gc, auto zero) {
    using T = decltype(zero);
    at::Tensor out = at::empty({N, d}, gc.options());
    const SignLists lists = col_lists(pc, k, d, kChunk<T>);
    rows_kernel<T>(gc.data_ptr<T>(), N, k, lists, d, static_cast<T>(scale), out.data_ptr<T>());
    return out;
  });
}

at::Tensor ternary_conv_project_cpu(const at::Tensor& x, const at::Tensor& packed, double scale, int64_t kh,
                                   int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                   int64_t dw, int64_t groups) {
  check_float_input("x", x, 4);
  TORCH_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0 && dh >= 1 && dw >= 1,
              "kernel size, stride and dilation must be >= 1 and padding >= 0");
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "groups must divide the channels of x (", x.size(1),
              "), got ", groups);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), Wd = x.size(3);
  const int64_t cg = C / groups, kk = kh * kw, d = cg * kk;
  const int64_t k = check_packed(packed, d, x);
  const int64_t Ho = conv_out(H, kh, sh, ph, dh), Wo = conv_out(Wd, kw, sw, pw, dw);
  TORCH_CHECK(Ho >= 1 && Wo >= 1, "the conv output would be empty: ", Ho, "x", Wo);
  const at::Tensor pc = packed.contiguous();
  return run_float(x, [&](const at::Tensor& xc, auto zero) {
    using T = decltype(zero);
    at::Tensor y = at::empty({B, groups * k, Ho, Wo}, xc.options());
    const int64_t HW = H * Wd, L = Ho * Wo;
    if (B * groups >= kLaneMinUnits<T>) {  // enough units to fill (half) a vector: batch lanes
      conv_lanes<T>(xc.data_ptr<T>(), B * groups, cg, H, Wd, pc, k, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo,
                    static_cast<T>(scale), y.data_ptr<T>());
      return y;
    }
    // Channel blocks of ~24 KiB of input planes: the planes of a block stay in L1 while all k rows of
    // P read them; the per-block sums are shifted into the outputs (shifting is linear).
    const int64_t cb = std::max<int64_t>(32, 24576 / std::max<int64_t>(1, HW * static_cast<int64_t>(sizeof(T))));
    const int64_t nblk = (cg + cb - 1) / cb;
    const SignLists lists = conv_lists(pc, k, cg, kk, HW, cb);
    const T* X = xc.data_ptr<T>();
    T* Y = y.data_ptr<T>();
    const T s = static_cast<T>(scale);
    at::parallel_for(0, B * groups, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> plane(static_cast<size_t>(HW));
      for (int64_t bg = t0; bg < t1; ++bg) {  // bg = b * groups + g
        const T* xb = X + bg * cg * HW;
        T* yb = Y + bg * k * L;
        std::fill(yb, yb + k * L, T(0));
        for (int64_t blk = 0; blk < nblk; ++blk) {
          for (int64_t p = 0; p < k; ++p) {
            T* out = yb + p * L;
            for (int64_t ij = 0; ij < kk; ++ij) {
              const int64_t r = (blk * k + p) * kk + ij;
              if (lists.start[2 * r] == lists.start[2 * r + 2]) continue;
              signed_sum<T>(xb, lists, r, HW, plane.data());
              const int64_t i = ij / kw, j = ij % kw;
              const int64_t dy = i * dh - ph, dx = j * dw - pw;  // ih = oh*sh + dy, iw = ow*sw + dx
              // valid ow: 0 <= ow*sw + dx < Wd
              const int64_t ow0 = dx >= 0 ? 0 : (-dx + sw - 1) / sw;
              const int64_t ow1 = std::min<int64_t>(Wo, Wd - dx <= 0 ? 0 : (Wd - dx + sw - 1) / sw);
              for (int64_t oh = 0; oh < Ho; ++oh) {
                const int64_t ih = oh * sh + dy;
                if (ih < 0 || ih >= H) continue;
                const T* src = plane.data() + ih * Wd + dx;
                T* dst = out + oh * Wo;
                if (sw == 1) {
                  for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] += src[ow];
                } else {
                  for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] += src[ow * sw];
                }
              }
            }
          }
        }
        for (int64_t e = 0; e < k * L; ++e) yb[e] *= s;
      }
    });
    return y;
  });
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("ternary_generate", &fastnoise::ternary_generate_cpu);
  m.impl("ternary_project", &fastnoise::ternary_project_cpu);
  m.impl("ternary_project_t", &fastnoise::ternary_project_t_cpu);
  m.impl("ternary_conv_project", &fastnoise::ternary_conv_project_cpu);
  m.impl("ternary_conv_epilogue", &fastnoise::ternary_conv_epilogue_cpu);
  m.impl("ternary_conv_epilogue_pooled", &fastnoise::ternary_conv_epilogue_pooled_cpu);
}
