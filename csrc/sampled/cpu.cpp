// CPU kernels of the sampled exact products (NENNI): only the selected outputs are computed.
//
// Position granularity (sampled_linear, sampled_conv2d) is a sampled dense-dense product (SDDMM):
// rows are samples (linear) or output positions (conv, im2col'ed per tile of positions into a
// thread-local buffer), and for each row only the dot products with the weight rows of its selected
// channels run, eight at a time sharing the row's loads (register-blocked, vectorized by the
// compiler). Channel granularity (channel_conv2d) gathers each sample's kept weight rows and runs one
// GEMM over the im2col'ed sample: dense work on the kept channels only. Half / bfloat16 inputs are
// computed in float32 and rounded once. Values never depend on the thread count.
#include <ATen/Parallel.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common.h"
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

// Dense C[r * ldc + c] = P[r] . Wk[c] for r < rows, c < ncols (rows of P and Wk along K): 4x4
// register blocks (8 loads per 16 vector FMAs), edges with 1x4 / 4x1 / 1x1. (An outer-product
// kernel on transposed packed weights measured 2x slower here: the packing dominates at small nk.)
template <typename T>
void gemm_nt(const T* P, int64_t ldp, int64_t rows, const T* Wk, int64_t ldw, int64_t ncols, int64_t K, T* C,
             int64_t ldc) {
  const T* pr[4];
  const T* w[4];
  T res[16];
  for (int64_t r = 0; r < rows; r += 4) {
    const int rb = static_cast<int>(std::min<int64_t>(4, rows - r));
    for (int i = 0; i < rb; ++i) pr[i] = P + (r + i) * ldp;
    for (int64_t c = 0; c < ncols; c += 4) {
      const int cb = static_cast<int>(std::min<int64_t>(4, ncols - c));
      for (int i = 0; i < cb; ++i) w[i] = Wk + (c + i) * ldw;
      if (rb == 4 && cb == 4) {
        dot_tile<4, 4>(pr, w, K, res);
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) C[(r + i) * ldc + c + j] = res[i * 4 + j];
      } else if (cb == 4) {
        for (int i = 0; i < rb; ++i) {
          dot_tile<1, 4>(pr + i, w, K, res);
          for (int j = 0; j < 4; ++j) C[(r + i) * ldc + c + j] = res[j];
        }
      } else if (rb == 4) {
        for (int j = 0; j < cb; ++j) {
          dot_tile<4, 1>(pr, w + j, K, res);
          for (int i = 0; i < 4; ++i) C[(r + i) * ldc + c + j] = res[i];
        }
      } else {
        for (int i = 0; i < rb; ++i)
          for (int j = 0; j < cb; ++j) {
            dot_tile<1, 1>(pr + i, w + j, K, res);
            C[(r + i) * ldc + c + j] = res[0];
          }
      }
    }
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

// Half / bfloat16 run in float32; float and double natively. Returns (compute dtype, tensors).
inline at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kDouble) ? at::kDouble : at::kFloat;
}

struct Prepared {
  at::Tensor x, w, b, m;
};

inline Prepared prepare(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        const at::Tensor& mask) {
  const auto ct = compute_type(x.scalar_type());
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
  const auto ct = compute_type(x.scalar_type());
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
      std::vector<scalar_t> buf(kRowTile * g.Kg);
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

// Few kept channels (nk <= kDirectMax), groups = 1, unit column dilation: no im2col. In the channels-last
// input the patch row ki of output (ho, wo) is one contiguous run of (kj, c) values, and so is the same
// row of a permuted weight [n, kh, kw, C]: each output is a sum over ki of dot products of two runs,
// clipped at the padding; the kept channels share the run's loads (dot_tile, 8 / 4 / 1 at a time).
constexpr int64_t kDirectMax = 8;

template <typename T>
void channel_direct(const T* X, const ConvGeom& g, int64_t b, const T* Wt, const int64_t* kept, int64_t nk,
                    T* res) {
  const T* pr[1];
  const T* w[8];
  T part[8];
  for (int64_t ho = 0; ho < g.Ho; ++ho)
    for (int64_t wo = 0; wo < g.Wo; ++wo) {
      const int64_t l = ho * g.Wo + wo, w0 = wo * g.sw - g.pw;
      const int64_t kj0 = std::max<int64_t>(0, -w0), kj1 = std::min<int64_t>(g.kw, g.W - w0);
      for (int64_t i = 0; i < nk; ++i) res[i * g.L + l] = T(0);
      if (kj1 <= kj0) continue;
      const int64_t len = (kj1 - kj0) * g.C;
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const int64_t h = ho * g.sh - g.ph + ki * g.dh;
        if (h < 0 || h >= g.H) continue;
        pr[0] = X + ((b * g.H + h) * g.W + w0 + kj0) * g.C;
        const int64_t woff = (ki * g.kw + kj0) * g.C;
        int64_t i = 0;
        for (; i + 8 <= nk; i += 8) {
          for (int c = 0; c < 8; ++c) w[c] = Wt + kept[i + c] * g.Kg + woff;
          dot_tile<1, 8>(pr, w, len, part);
          for (int c = 0; c < 8; ++c) res[(i + c) * g.L + l] += part[c];
        }
        for (; i + 4 <= nk; i += 4) {
          for (int c = 0; c < 4; ++c) w[c] = Wt + kept[i + c] * g.Kg + woff;
          dot_tile<1, 4>(pr, w, len, part);
          for (int c = 0; c < 4; ++c) res[(i + c) * g.L + l] += part[c];
        }
        for (; i < nk; ++i) {
          w[0] = Wt + kept[i] * g.Kg + woff;
          dot_tile<1, 1>(pr, w, len, part);
          res[i * g.L + l] += part[0];
        }
      }
    }
}

at::Tensor channel_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& keep, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, keep);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_channel_keep(keep, g);
  Prepared p = prepare_conv(x, weight, bias, keep);
  at::Tensor out = at::empty({g.B, g.N, g.Ho, g.Wo}, p.x.options());  // dropped planes zeroed below
  if (out.numel() == 0) return out.to(x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "channel_conv2d_cpu", [&] {
    const scalar_t* X = p.x.data_ptr<scalar_t>();
    const scalar_t* Wt = p.w.data_ptr<scalar_t>();
    const scalar_t* Bs = p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr;
    const bool* Kp = p.m.data_ptr<bool>();
    scalar_t* O = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.B * g.groups, 1, [&](int64_t t0, int64_t t1) {
      std::vector<int64_t> kept;
      std::vector<scalar_t> cols(g.Kg * g.L), wk(g.Ng * g.Kg), res(g.Ng * g.L);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t grp = t % g.groups, b = t / g.groups, n0 = grp * g.Ng;
        kept.clear();
        for (int64_t j = 0; j < g.Ng; ++j) {
          if (Kp[b * g.N + n0 + j]) kept.push_back(j);
          else std::fill_n(O + (b * g.N + n0 + j) * g.L, g.L, scalar_t(0));
        }
        const int64_t nk = static_cast<int64_t>(kept.size());
        if (nk == 0) continue;
        if (nk <= kDirectMax && g.groups == 1 && g.dw == 1) {
          channel_direct<scalar_t>(X, g, b, Wt, kept.data(), nk, res.data());  // res [nk, L]
        } else {
          im2col_tile<scalar_t>(X, g, b, grp, 0, g.L, cols.data(), g.Kg);  // [L, Kg]
          for (int64_t i = 0; i < nk; ++i)
            std::copy_n(Wt + (n0 + kept[i]) * g.Kg, g.Kg, wk.data() + i * g.Kg);
          // res [nk, L] = wk [nk, Kg] x cols [L, Kg]^T: one dense BLAS GEMM (at::mm_out: MKL / oneDNN,
          // single-threaded inside parallel_for) on the kept channels
          const auto opt = at::TensorOptions().dtype(p.x.scalar_type());
          at::Tensor res_t = at::from_blob(res.data(), {nk, g.L}, opt);
          at::mm_out(res_t, at::from_blob(wk.data(), {nk, g.Kg}, opt),
                     at::from_blob(cols.data(), {g.L, g.Kg}, opt).t());
        }
        for (int64_t i = 0; i < nk; ++i) {
          const int64_t j = n0 + kept[i];
          scalar_t* o = O + (b * g.N + j) * g.L;
          const scalar_t bj = Bs ? Bs[j] : scalar_t(0);
          const scalar_t* src = res.data() + i * g.L;
          for (int64_t l = 0; l < g.L; ++l) o[l] = src[l] + bj;
        }
      }
    });
  });
  return out.to(x.scalar_type());
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
  m.impl("sampled_conv2d_backward", &fastnoise::sampled_conv2d_backward_cpu);
}
