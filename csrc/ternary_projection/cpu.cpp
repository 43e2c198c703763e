// CPU kernels of the sparse ternary projection (layout and generation rule: ternary.h).
//
// No multiplications: every output is a signed sum of input vectors (+1 / -1 entries of P), then one
// multiplication by `scale`. The inner loop `signed_sum` adds whole contiguous vectors:
//   ternary_project     rows blocked by kRows and transposed, so entry q of P adds row q of the block
//   ternary_project_t   the same with the transposed lists (entry p of column q)
//   ternary_conv_project per (image, group, output row p of P) and kernel offset (i, j): the channel planes
//                        x[c] with P[p, c, i, j] = +1 (-1) are added (subtracted) into one plane, which is
//                        then added, shifted by (i, j) with stride / padding / dilation, into the output.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common.h"
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

// One 512-bit vector (GCC / Clang vector extension; unaligned, may alias its elements). Explicit
// vectors keep the accumulators in registers: auto-vectorizing the loop below produced gathers.
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));
};
template <typename T>
constexpr int kVW = 64 / static_cast<int>(sizeof(T));  // elements per vector
template <typename T>
constexpr int kChunk = 4 * kVW<T>;  // elements per chunk: 64 floats / 32 doubles

template <typename T>
inline typename Vec<T>::type vload(const T* p) {
  return *reinterpret_cast<const typename Vec<T>::type*>(p);
}

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
    std::vector<T> tin(static_cast<size_t>(n * R));
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
}
