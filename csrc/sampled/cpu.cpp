// CPU kernels of the sampled exact products (NENNI): only the selected outputs are computed.
//
// Position granularity (sampled_linear, sampled_conv2d) is a sampled dense-dense product (SDDMM):
// rows are samples (linear) or output positions (conv, im2col'ed per tile of positions into a
// thread-local buffer), and for each row only the dot products with the weight rows of its selected
// channels run, eight at a time sharing the row's loads (register-blocked, vectorized by the
// compiler). Channel granularity (channel_conv2d) pads and transposes each sample to channels-last in
// cache and runs register tiles of output positions x kept channels over contiguous patch runs: dense
// work on the kept channels only, no im2col. Half / bfloat16 inputs are
// computed in float32 and rounded once. Values never depend on the thread count.
#include <ATen/Parallel.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common.h"
#include "common/dtype_aten.h"
#include "simd.h"
#include "sampled/aten_common.h"

namespace fastnoise {
namespace {

// RB x CB dot products of length K between rows p[0..RB) and w[0..CB): out[r * CB + c] = p[r] . w[c].
// Register-blocked (RB * CB vector accumulators; RB + CB loads per RB * CB FMAs); the lanes are
// independent, so the loop vectorizes without reassociation flags, and are summed in a fixed order.
template <int RB, int CB, typename T>
inline void dot_tile(const T* const* p, const T* const* w, int64_t K, T* out) {
  constexpr int V = 64 / sizeof(T);
  T acc[RB][CB][V];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < CB; ++c)
      for (int l = 0; l < V; ++l) acc[r][c][l] = T(0);
  int64_t k = 0;
  for (; k + V <= K; k += V) {
    for (int r = 0; r < RB; ++r) {
      const T* __restrict__ pr = p[r] + k;
      for (int c = 0; c < CB; ++c) {
        const T* __restrict__ wc = w[c] + k;
#pragma omp simd
        for (int l = 0; l < V; ++l) acc[r][c][l] += pr[l] * wc[l];
      }
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < CB; ++c) {
      T s = T(0);
      for (int l = 0; l < V; ++l) s += acc[r][c][l];
      for (int64_t kk = k; kk < K; ++kk) s += p[r][kk] * w[c][kk];
      out[r * CB + c] = s;
    }
}

// Reduction chunk: a chunk of all weight rows of a group stays in L2 (~384 KiB) while a tile of rows
// streams over it.
template <typename T>
inline int64_t k_chunk(int64_t K, int64_t ncols) {
  constexpr int64_t V = 64 / sizeof(T);
  int64_t kc = (384 * 1024 / sizeof(T)) / std::max<int64_t>(ncols, 1);
  kc = std::max<int64_t>(V * 4, kc / V * V);
  return std::min(kc, K);
}

// Rows [0, rows) of P (row stride ldp, length K) against weight rows W (stride ldw): for each row r and
// each column j < ncols with M[r*m_rs + j*m_cs], O[r*o_rs + j*o_cs] = P[r] . W[j] + bias[j]. Unselected
// outputs are not touched (the caller zero-fills). Per row, the selected dot products run 8 at a time
// sharing the row's loads; the reduction is chunked (k_chunk) so the weight chunk stays in cache.
template <typename T>
void sddmm_rows(const T* P, int64_t ldp, int64_t rows, int64_t K, const T* W, int64_t ldw, int64_t ncols,
                const bool* M, int64_t m_rs, int64_t m_cs, const T* bias, T* O, int64_t o_rs, int64_t o_cs,
                std::vector<int64_t>& sel, std::vector<int64_t>& start, std::vector<T>& acc) {
  start.assign(1, 0);
  sel.clear();
  for (int64_t r = 0; r < rows; ++r) {
    const bool* mr = M + r * m_rs;
    for (int64_t j = 0; j < ncols; ++j)
      if (mr[j * m_cs]) sel.push_back(j);
    start.push_back(static_cast<int64_t>(sel.size()));
  }
  if (sel.empty()) return;
  acc.assign(sel.size(), T(0));
  const int64_t kc = k_chunk<T>(K, ncols);
  const T* w[8];
  const T* pr[1];
  T res[8];
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t klen = std::min(kc, K - k0);
    for (int64_t r = 0; r < rows; ++r) {
      pr[0] = P + r * ldp + k0;
      int64_t i = start[r];
      const int64_t e = start[r + 1];
      for (; i + 8 <= e; i += 8) {
        for (int c = 0; c < 8; ++c) w[c] = W + sel[i + c] * ldw + k0;
        dot_tile<1, 8>(pr, w, klen, res);
        for (int c = 0; c < 8; ++c) acc[i + c] += res[c];
      }
      for (; i + 4 <= e; i += 4) {
        for (int c = 0; c < 4; ++c) w[c] = W + sel[i + c] * ldw + k0;
        dot_tile<1, 4>(pr, w, klen, res);
        for (int c = 0; c < 4; ++c) acc[i + c] += res[c];
      }
      for (; i < e; ++i) {
        w[0] = W + sel[i] * ldw + k0;
        dot_tile<1, 1>(pr, w, klen, res);
        acc[i] += res[0];
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = start[r]; i < start[r + 1]; ++i) {
      const int64_t j = sel[i];
      O[r * o_rs + j * o_cs] = acc[i] + (bias ? bias[j] : T(0));
    }
}

// im2col of output positions [l0, l1) of sample b, group grp from the channels-last input
// xcl [B, H, W, C]: row (l - l0) of buf (row stride ld) is the patch in (ki, kj, c) order, the row
// layout of the weight permuted to [n, kh, kw, C/groups]. Each (ki, kj) is one contiguous copy of
// C/groups values (zeros in the padding).
template <typename T>
void im2col_tile(const T* xcl, const ConvGeom& g, int64_t b, int64_t grp, int64_t l0, int64_t l1, T* buf,
                 int64_t ld) {
  const T* xb = xcl + b * g.H * g.W * g.C + grp * g.Cg;
  for (int64_t l = l0; l < l1; ++l) {
    const int64_t oh = l / g.Wo, ow = l % g.Wo;
    T* dst = buf + (l - l0) * ld;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
      for (int64_t kj = 0; kj < g.kw; ++kj, dst += g.Cg) {
        const int64_t iw = ow * g.sw - g.pw + kj * g.dw;
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
          std::copy_n(xb + (ih * g.W + iw) * g.C, g.Cg, dst);
        } else {
          std::fill_n(dst, g.Cg, T(0));
        }
      }
    }
  }
}

// Half / bfloat16 run in float32; float and double natively (math_type, common/dtype_aten.h).
struct Prepared {
  at::Tensor x, w, b, m;
};

inline Prepared prepare(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        const at::Tensor& mask) {
  const auto ct = math_type(x.scalar_type());
  Prepared p;
  p.x = x.to(ct).contiguous();
  p.w = weight.to(ct).contiguous();
  if (bias.has_value()) p.b = bias->to(ct).contiguous();
  p.m = mask.contiguous();
  return p;
}

// Conv operands: x channels-last [B, H, W, C], weight [n, kh, kw, C/groups] (rows in patch order).
inline Prepared prepare_conv(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                             const at::Tensor& mask) {
  const auto ct = math_type(x.scalar_type());
  Prepared p;
  p.x = x.to(ct).permute({0, 2, 3, 1}).contiguous();
  p.w = weight.to(ct).permute({0, 2, 3, 1}).contiguous();
  if (bias.has_value()) p.b = bias->to(ct).contiguous();
  p.m = mask.contiguous();
  return p;
}

constexpr int64_t kRowTile = 64;  // rows (samples / output positions) per task

at::Tensor sampled_linear_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& mask) {
  check_sampled_inputs(x, weight, bias, mask);
  const ConvGeom lg = linear_geom(x, weight, mask);
  const int64_t R = lg.B, K = lg.C, N = lg.N;
  Prepared p = prepare(x, weight, bias, mask);
  at::Tensor out = at::zeros({R, N}, p.x.options());
  if (R == 0 || N == 0) return out.to(x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "sampled_linear_cpu", [&] {
    const scalar_t* X = p.x.data_ptr<scalar_t>();
    const scalar_t* Wt = p.w.data_ptr<scalar_t>();
    const scalar_t* Bs = p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr;
    const bool* M = p.m.data_ptr<bool>();
    scalar_t* O = out.data_ptr<scalar_t>();
    const int64_t tiles = (R + kRowTile - 1) / kRowTile;
    at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
      std::vector<int64_t> sel, start;
      std::vector<scalar_t> acc;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * kRowTile, rows = std::min(kRowTile, R - r0);
        sddmm_rows<scalar_t>(X + r0 * K, K, rows, K, Wt, K, N, M + r0 * N, N, 1, Bs, O + r0 * N, N, 1, sel, start,
                             acc);
      }
    });
  });
  return out.to(x.scalar_type());
}

at::Tensor sampled_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& mask, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, mask);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_position_mask(mask, g);
  Prepared p = prepare_conv(x, weight, bias, mask);
  at::Tensor out = at::zeros({g.B, g.N, g.Ho, g.Wo}, p.x.options());
  if (out.numel() == 0) return out.to(x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "sampled_conv2d_cpu", [&] {
    const scalar_t* X = p.x.data_ptr<scalar_t>();
    const scalar_t* Wt = p.w.data_ptr<scalar_t>();
    const scalar_t* Bs = p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr;
    const bool* M = p.m.data_ptr<bool>();
    scalar_t* O = out.data_ptr<scalar_t>();
    const int64_t ltiles = (g.L + kRowTile - 1) / kRowTile;
    const int64_t tasks = g.B * g.groups * ltiles;
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<int64_t> sel, start;
      std::vector<scalar_t> acc;
      VecBuffer<scalar_t> buf(kRowTile * g.Kg);  // 64-byte aligned rows
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t lt = t % ltiles, grp = (t / ltiles) % g.groups, b = t / (ltiles * g.groups);
        const int64_t l0 = lt * kRowTile, l1 = std::min(g.L, l0 + kRowTile);
        const int64_t n0 = grp * g.Ng;
        // skip the im2col of tiles with nothing selected (all-dropped tiles cost only the mask scan)
        bool any = false;
        for (int64_t j = 0; j < g.Ng && !any; ++j) {
          const bool* mj = M + (b * g.N + n0 + j) * g.L;
          for (int64_t l = l0; l < l1; ++l) any |= mj[l];
        }
        if (!any) continue;
        im2col_tile<scalar_t>(X, g, b, grp, l0, l1, buf.data(), g.Kg);
        sddmm_rows<scalar_t>(buf.data(), g.Kg, l1 - l0, g.Kg, Wt + n0 * g.Kg, g.Kg, g.Ng,
                             M + (b * g.N + n0) * g.L + l0, 1, g.L, Bs ? Bs + n0 : nullptr,
                             O + (b * g.N + n0) * g.L + l0, 1, g.L, sel, start, acc);
      }
    });
  });
  return out.to(x.scalar_type());
}

// Sample b of x [B, C, H, W] as a zero-padded channels-last image xp [Hp, Wp, C] (Hp = H + 2ph,
// Wp = W + 2pw): every patch tap is then an in-bounds contiguous run of channels, with no branches.
// Transposed in kVW x kVW tiles (channels x positions) in registers; scalar edges.
template <typename T>
void pad_channels_last(const T* X, const ConvGeom& g, int64_t b, T* xp) {
  const int64_t Wp = g.W + 2 * g.pw, C = g.C, HW = g.H * g.W;
  std::fill_n(xp, g.ph * Wp * C, T(0));
  std::fill_n(xp + (g.ph + g.H) * Wp * C, g.ph * Wp * C, T(0));
  for (int64_t h = 0; h < g.H; ++h) {
    T* row = xp + (h + g.ph) * Wp * C;
    std::fill_n(row, g.pw * C, T(0));
    std::fill_n(row + (g.pw + g.W) * C, g.pw * C, T(0));
  }
  const T* xb = X + b * C * HW;
  constexpr int VW = kVW<T>;
  auto at = [&](int64_t hw) { return xp + ((hw / g.W + g.ph) * Wp + hw % g.W + g.pw) * C; };
  int64_t c0 = 0;
  for (; c0 + VW <= C; c0 += VW) {  // VW x VW tiles (channels x positions), transposed in registers
    int64_t hw = 0;
    for (; hw + VW <= HW; hw += VW) {
      typename Vec<T>::type r[VW];
#pragma GCC unroll 16
      for (int j = 0; j < VW; ++j) r[j] = vload(xb + (c0 + j) * HW + hw);
      transpose_vectors<T>(r);  // r[i] = channels c0 .. c0 + VW of position hw + i
#pragma GCC unroll 16
      for (int i = 0; i < VW; ++i) vstore(at(hw + i) + c0, r[i]);
    }
    for (; hw < HW; ++hw)
      for (int j = 0; j < VW; ++j) at(hw)[c0 + j] = xb[(c0 + j) * HW + hw];
  }
  for (int64_t hw = 0; hw < HW && c0 < C; ++hw)
    for (int64_t c = c0; c < C; ++c) at(hw)[c] = xb[c * HW + hw];
}

// The taps of one output position as contiguous runs of the padded channels-last sample and of the
// permuted weight [n, kh, kw, C/groups]: with unit column dilation and one group, row ki of a patch is
// one run of kw * C values; otherwise every (ki, kj) is a run of C/groups values.
struct Runs {
  int64_t n, len;
  bool merged;
};

inline Runs patch_runs(const ConvGeom& g) {
  const bool merged = g.dw == 1 && g.groups == 1;
  return {merged ? g.kh : g.kh * g.kw, merged ? g.kw * g.C : g.Cg, merged};
}

// Offset in xp of run `r` of output position l, group grp; `woff` receives the run's offset in a weight row.
inline int64_t run_offset(const ConvGeom& g, const Runs& rs, int64_t Wp, int64_t l, int64_t grp, int64_t r,
                          int64_t* woff) {
  const int64_t ki = rs.merged ? r : r / g.kw, kj = rs.merged ? 0 : r % g.kw;
  *woff = (ki * g.kw + kj) * g.Cg;
  const int64_t ho = l / g.Wo, wo = l % g.Wo;
  return ((ho * g.sh + ki * g.dh) * Wp + wo * g.sw + kj * g.dw) * g.C + grp * g.Cg;
}

// Kept channels without im2col: res[i, l] = W[kept[i]] . patch(l) as register tiles of RB output positions x
// CB kept channels (RB + CB vector loads per RB * CB FMAs), accumulated over all patch runs in registers and
// reduced once. Measured against im2col + BLAS GEMM on the kept rows (ResNet-18 256->256 8x8, batch 128):
// as fast or faster at every kept fraction up to 30% (the im2col alone writes L * Kg values per sample, and
// MKL's sgemm runs at half this CPU's FMA rate), so it is the only path.

// Tile sizes in native vectors (csrc/simd.h): RB * CB * kParts accumulators plus RB loads and one weight
// vector fit the vector registers (4 x 4 zmm with AVX-512; 2 x 3 x 2 ymm with AVX2; 1 x 3 x 4 with SSE).
template <typename T>
constexpr int kDirRows = kNatRegs >= 32 ? 4 : kParts<T> <= 2 ? 2 : 1;
template <typename T>
constexpr int kDirCols = kNatRegs >= 32 ? 4 : 3;

template <typename T, int RB, int CB>
inline void direct_block(const T* xp, const ConvGeom& g, const Runs& rs, int64_t Wp, int64_t grp, int64_t l0,
                         const T* Wt, const int64_t* kept, T* res) {
  using N = typename NVec<T>::type;
  constexpr int VW = kVW<T>, NW = kNW<T>, P = kParts<T>;
  N acc[RB][CB][P];  // lanes j * NW .. of the 64-byte accumulator of (position i, channel c)
  T tail[RB][CB];
  for (int i = 0; i < RB; ++i)
    for (int c = 0; c < CB; ++c) {
      for (int j = 0; j < P; ++j) acc[i][c][j] = N{};
      tail[i][c] = T(0);
    }
  const int64_t nv = rs.len / VW * VW;
  for (int64_t r = 0; r < rs.n; ++r) {
    const T* p[RB];
    const T* w[CB];
    int64_t woff = 0;
    for (int i = 0; i < RB; ++i) p[i] = xp + run_offset(g, rs, Wp, l0 + i, grp, r, &woff);
    for (int c = 0; c < CB; ++c) w[c] = Wt + kept[c] * g.Kg + woff;
    for (int64_t k = 0; k < nv; k += VW) {
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        N xv[RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; ++i) xv[i] = nload(p[i] + k + j * NW);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) {
          const N wv = nload(w[c] + k + j * NW);
#pragma GCC unroll 8
          for (int i = 0; i < RB; ++i) acc[i][c][j] += xv[i] * wv;
        }
      }
    }
    for (int64_t k = nv; k < rs.len; ++k)
      for (int i = 0; i < RB; ++i)
        for (int c = 0; c < CB; ++c) tail[i][c] += p[i][k] * w[c][k];
  }
  for (int i = 0; i < RB; ++i)
    for (int c = 0; c < CB; ++c) {
      T s = T(0);  // the lanes of the 64-byte accumulator in order (as hsum): the same bits on every ISA
      for (int j = 0; j < P; ++j)
        for (int l = 0; l < NW; ++l) s += acc[i][c][j][l];
      res[c * g.L + l0 + i] = s + tail[i][c];
    }
}

// All output positions for CB kept channels: kDirRows<T> at a time, then one at a time.
template <typename T, int CB>
inline void direct_cols(const T* xp, const ConvGeom& g, const Runs& rs, int64_t Wp, int64_t grp, const T* Wt,
                        const int64_t* kept, T* res) {
  int64_t l0 = 0;
  for (; l0 + kDirRows<T> <= g.L; l0 += kDirRows<T>)
    direct_block<T, kDirRows<T>, CB>(xp, g, rs, Wp, grp, l0, Wt, kept, res);
  for (; l0 < g.L; ++l0) direct_block<T, 1, CB>(xp, g, rs, Wp, grp, l0, Wt, kept, res);
}

// the last nc < kDirCols<T> kept channels
template <typename T, int CB>
inline void direct_cols_tail(int64_t nc, const T* xp, const ConvGeom& g, const Runs& rs, int64_t Wp, int64_t grp,
                             const T* Wt, const int64_t* kept, T* res) {
  if constexpr (CB >= 1) {
    if (nc == CB) return direct_cols<T, CB>(xp, g, rs, Wp, grp, Wt, kept, res);
    direct_cols_tail<T, CB - 1>(nc, xp, g, rs, Wp, grp, Wt, kept, res);
  }
}

// res [nk, L] (row stride ldr) for the kept rows `kept` (indices into Wt, already offset to the group).
// Channel blocks outer: a block's weight rows stay in L1 while every output position reads them.
template <typename T>
void channel_direct(const T* xp, const ConvGeom& g, int64_t Wp, int64_t grp, const T* Wt, const int64_t* kept,
                    int64_t nk, T* res) {
  const Runs rs = patch_runs(g);
  int64_t i = 0;
  for (; i + kDirCols<T> <= nk; i += kDirCols<T>)
    direct_cols<T, kDirCols<T>>(xp, g, rs, Wp, grp, Wt, kept + i, res + i * g.L);
  direct_cols_tail<T, kDirCols<T> - 1>(nk - i, xp, g, rs, Wp, grp, Wt, kept + i, res + i * g.L);
}

// The kept planes of the channel conv written into O [B, n, Ho, Wo] (contiguous, math type): O[b, j] = conv
// for keep[b, j]; the dropped planes are zeroed when zero_dropped, else left as they are (channel_conv2d_into).
void channel_conv2d_planes(const Prepared& p, const ConvGeom& g, at::Tensor& out, bool zero_dropped) {
  const int64_t Hp = g.H + 2 * g.ph, Wp = g.W + 2 * g.pw;
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "channel_conv2d_cpu", [&] {
    const scalar_t* X = p.x.data_ptr<scalar_t>();
    const scalar_t* Wt = p.w.data_ptr<scalar_t>();
    const scalar_t* Bs = p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr;
    const bool* Kp = p.m.data_ptr<bool>();
    scalar_t* O = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<int64_t> kept;
      VecBuffer<scalar_t> xp(Hp * Wp * g.C);  // 64-byte aligned: runs start on cache lines when C*4 does
      std::vector<scalar_t> res(g.Ng * g.L);
      for (int64_t b = b0; b < b1; ++b) {
        bool padded = false;
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          const int64_t n0 = grp * g.Ng;
          kept.clear();
          for (int64_t j = 0; j < g.Ng; ++j) {
            if (Kp[b * g.N + n0 + j]) kept.push_back(n0 + j);
            else if (zero_dropped) std::fill_n(O + (b * g.N + n0 + j) * g.L, g.L, scalar_t(0));
          }
          const int64_t nk = static_cast<int64_t>(kept.size());
          if (nk == 0) continue;
          if (!padded) pad_channels_last<scalar_t>(X, g, b, xp.data()), padded = true;
          channel_direct<scalar_t>(xp.data(), g, Wp, grp, Wt, kept.data(), nk, res.data());  // res [nk, L]
          for (int64_t i = 0; i < nk; ++i) {
            const int64_t j = kept[i];
            scalar_t* o = O + (b * g.N + j) * g.L;
            const scalar_t bj = Bs ? Bs[j] : scalar_t(0);
            const scalar_t* src = res.data() + i * g.L;
            for (int64_t l = 0; l < g.L; ++l) o[l] = src[l] + bj;
          }
        }
      }
    });
  });
}

at::Tensor channel_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& keep, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, keep);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_channel_keep(keep, g);
  // x stays NCHW: each task pads and transposes its own sample (in cache) instead of a global permute
  Prepared p = prepare(x, weight.permute({0, 2, 3, 1}), bias, keep);
  at::Tensor out = at::empty({g.B, g.N, g.Ho, g.Wo}, p.x.options());  // dropped planes zeroed
  if (out.numel() == 0) return out.to(x.scalar_type());
  channel_conv2d_planes(p, g, out, /*zero_dropped=*/true);
  return out.to(x.scalar_type());
}

// In place: out[b, j] = channel_conv2d(...)[b, j] for keep[b, j]; the other planes of out are not touched
// (NENNI writes the kept channels straight into z~: no second full-size output, no zero fill, no scatter).
// out must not overlap x, weight or bias. Half / bfloat16 or a non-contiguous out: computed by
// channel_conv2d and copied into the kept planes.
void channel_conv2d_into_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                             const at::Tensor& keep, const at::Tensor& out, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, keep);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_channel_keep(keep, g);
  TORCH_CHECK(out.device() == x.device() && out.scalar_type() == x.scalar_type(),
              "out must have the dtype and device of x");
  TORCH_CHECK(out.dim() == 4 && out.size(0) == g.B && out.size(1) == g.N && out.size(2) == g.Ho &&
                  out.size(3) == g.Wo,
              "out must have shape [", g.B, ", ", g.N, ", ", g.Ho, ", ", g.Wo, "]");
  if (out.numel() == 0) return;
  if (!out.is_contiguous() || math_type(x.scalar_type()) != x.scalar_type()) {
    const at::Tensor z = channel_conv2d_cpu(x, weight, bias, keep, stride, padding, dilation, groups);
    out.copy_(at::where(keep.reshape({g.B, g.N, 1, 1}), z, out));
    return;
  }
  Prepared p = prepare(x, weight.permute({0, 2, 3, 1}), bias, keep);
  at::Tensor o = out;
  channel_conv2d_planes(p, g, o, /*zero_dropped=*/false);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_linear_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                           const at::Tensor& weight,
                                                                           const at::Tensor& mask) {
  return sampled_linear_backward_dense(grad, x, weight, mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_conv2d_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& mask,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return sampled_conv2d_backward_dense(grad, x, weight, mask, stride, padding, dilation, groups);
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("sampled_linear", &fastnoise::sampled_linear_cpu);
  m.impl("sampled_linear_backward", &fastnoise::sampled_linear_backward_cpu);
  m.impl("sampled_conv2d", &fastnoise::sampled_conv2d_cpu);
  m.impl("channel_conv2d", &fastnoise::channel_conv2d_cpu);
  m.impl("channel_conv2d_into", &fastnoise::channel_conv2d_into_cpu);
  m.impl("sampled_conv2d_backward", &fastnoise::sampled_conv2d_backward_cpu);
}
