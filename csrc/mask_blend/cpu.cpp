// CPU kernels of mask_blend: per-row top-k / N:M selection on order-preserving keys, then the blend
// out = mask ? z : za, in one pass per row (mask_select: the same selection, mask only); and the fused
// backward (grad -> grad*m, grad*(1-m)).
//
// The tensor is viewed as [outer, F, inner] (dim = the F axis), so dim=1 of NCHW needs no transpose.
// Rows (or N:M groups) are processed 16 at a time: their keys are gathered key-major into a
// [L, 16] buffer and selected with loops over the 16 rows (csrc/mask_blend/select.h), which
// vectorize; parallel over tiles.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common.h"
#include "mask_blend/args.h"
#include "mask_blend/keys.h"
#include "mask_blend/rows.h"
#include "mask_blend/select.h"
#include "simd.h"

namespace fastnoise {
namespace {

using Layout = MaskBlendLayout;

constexpr int kLanes = 16;               // rows per tile (SIMD lanes of the selection)
constexpr int64_t kMaxTileKeys = 1 << 18;  // longer rows go one per tile (bounded scratch memory)

// Rows r = (o, g, i) of `length` features `inner` apart: top-k has one group per (o, i), N:M has
// F / M. A tile holds R consecutive rows (the last one repeated to pad a partial tile).
// Blend = false (mask_select): only the mask is written; z and out are not touched (may be null).
template <typename scalar_t, int R, bool Blend>
void mask_blend_tiles(const scalar_t* z, const scalar_t* za, scalar_t* out, bool* mask, Layout l, int64_t length,
                      int64_t k, bool signed_score) {
  using K = typename KeyOf<scalar_t>::type;
  using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
  const int64_t L = length, inner = l.inner;
  const int64_t groups = l.feats / L;
  const int64_t gi = groups * inner;
  const int64_t n_rows = l.outer * gi;
  const int64_t n_tiles = (n_rows + R - 1) / R;
  const int64_t grain = std::max<int64_t>(1, 4096 / (L * R));
  at::parallel_for(0, n_tiles, grain, [&](int64_t begin, int64_t end) {
    std::vector<K> keys(L * R);
    std::vector<uint8_t> sel(L * R);
    int64_t base[R];
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * R;
      const int nr = static_cast<int>(std::min<int64_t>(R, n_rows - r0));
      for (int lane = 0; lane < R; ++lane) {
        const int64_t r = r0 + std::min(lane, nr - 1);
        const int64_t o = r / gi, rem = r - o * gi, g = rem / inner, i = rem - g * inner;
        base[lane] = o * gi * L + g * L * inner + i;
      }
      if (k <= 0 || k >= L) {  // keep nothing / everything: no scores needed
        memset(sel.data(), k > 0, L * R);
      } else if (inner == 1) {  // rows are contiguous: read each row, write its keys with stride R
        for (int lane = 0; lane < R; ++lane) {
          const scalar_t* p = za + base[lane];
          K* kp = keys.data() + lane;
          for (int64_t j = 0; j < L; ++j) kp[j * R] = score_key(static_cast<acc_t>(p[j]), signed_score);
        }
      } else {  // neighbouring lanes are neighbouring positions: read across lanes
        for (int64_t j = 0; j < L; ++j) {
          K* kp = keys.data() + j * R;
          const int64_t off = j * inner;
          for (int lane = 0; lane < R; ++lane) kp[lane] = score_key(static_cast<acc_t>(za[base[lane] + off]), signed_score);
        }
      }
      if (k > 0 && k < L) {
        select_lanes<K, R>(keys.data(), L, k, sel.data());
      }
      if (inner == 1) {
        for (int lane = 0; lane < nr; ++lane) {
          const int64_t b0 = base[lane];
          const uint8_t* sp = sel.data() + lane;
          for (int64_t j = 0; j < L; ++j) {
            const bool s = sp[j * R];
            if constexpr (Blend) out[b0 + j] = s ? z[b0 + j] : za[b0 + j];
            mask[b0 + j] = s;
          }
        }
      } else {
        for (int64_t j = 0; j < L; ++j) {
          const uint8_t* sp = sel.data() + j * R;
          const int64_t off = j * inner;
          for (int lane = 0; lane < nr; ++lane) {
            const int64_t idx = base[lane] + off;
            const bool s = sp[lane];
            if constexpr (Blend) out[idx] = s ? z[idx] : za[idx];
            mask[idx] = s;
          }
        }
      }
    }
  });
}

// Contiguous float32 rows (inner == 1): within-row vectorized selection (csrc/mask_blend/rows.h).
void mask_blend_rows_f32(const float* z, const float* za, float* out, bool* mask, Layout l, int64_t k, int64_t n,
                         int64_t m, bool signed_score) {
  const int64_t L = l.feats;
  if (m > 0) {  // N:M: the tensor is one run of outer * F / m groups
    const int64_t groups = l.outer * (L / m);
    const int64_t block = 4096 / m;  // groups per task
    at::parallel_for(0, (groups + block - 1) / block, 1, [&](int64_t b, int64_t e) {
      const int64_t g0 = b * block, g1 = std::min(groups, e * block);
      const int64_t off = g0 * m;
      if (signed_score) {
        mb_rows::nm_run<true>(z + off, za + off, out + off, mask + off, g1 - g0, static_cast<int>(m), static_cast<int>(n));
      } else {
        mb_rows::nm_run<false>(z + off, za + off, out + off, mask + off, g1 - g0, static_cast<int>(m), static_cast<int>(n));
      }
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 16384 / L);
  at::parallel_for(0, l.outer, grain, [&](int64_t b, int64_t e) {
    const int64_t Lp = (L + mb_rows::W - 1) / mb_rows::W * mb_rows::W;
    VecBuffer<uint32_t> keys(Lp), cand(Lp);
    VecBuffer<int32_t> idx(L);
    const mb_rows::RowScratch scratch{keys.data(), cand.data(), idx.data()};
    mb_rows::Bracket br;
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r * L;
      if (signed_score) {
        mb_rows::topk_row<true>(z + o, za + o, out + o, mask + o, L, k, scratch, br);
      } else {
        mb_rows::topk_row<false>(z + o, za + o, out + o, mask + o, L, k, scratch, br);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> mask_blend_cpu(const at::Tensor& z_in, const at::Tensor& za_in, int64_t keep,
                                                  int64_t n, int64_t m, bool signed_score, int64_t dim) {
  const Layout l = check_mask_blend_args(z_in, za_in, keep, n, m, dim);
  const at::Tensor z = z_in.contiguous();
  const at::Tensor za = za_in.contiguous();
  at::Tensor out = empty_output(z.sizes(), z.options());
  at::Tensor mask = empty_output(z.sizes(), z.options().dtype(at::kBool));
  if (z.numel() == 0) return {out, mask};
  const int64_t length = m > 0 ? m : l.feats;
  const int64_t k = m > 0 ? n : keep;
  const bool rows_path = z.scalar_type() == at::kFloat && l.inner == 1 && k > 0 && k < length &&
                         (m > 0 ? m <= 16 : (length > kRankCountMax && length < (int64_t(1) << 30)));
  if (rows_path) {
    mask_blend_rows_f32(z.data_ptr<float>(), za.data_ptr<float>(), out.data_ptr<float>(), mask.data_ptr<bool>(), l,
                        keep, n, m, signed_score);
    return {out, mask};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "mask_blend_cpu", [&] {
    if (length * kLanes <= kMaxTileKeys) {
      mask_blend_tiles<scalar_t, kLanes, true>(z.data_ptr<scalar_t>(), za.data_ptr<scalar_t>(),
                                               out.data_ptr<scalar_t>(), mask.data_ptr<bool>(), l, length, k,
                                               signed_score);
    } else {
      mask_blend_tiles<scalar_t, 1, true>(z.data_ptr<scalar_t>(), za.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                          mask.data_ptr<bool>(), l, length, k, signed_score);
    }
  });
  return {out, mask};
}

at::Tensor mask_select_cpu(const at::Tensor& za_in, int64_t keep, int64_t n, int64_t m, bool signed_score,
                           int64_t dim) {
  const Layout l = check_mask_blend_args(za_in, za_in, keep, n, m, dim);
  const at::Tensor za = za_in.contiguous();
  at::Tensor mask = at::empty(za.sizes(), za.options().dtype(at::kBool));
  if (za.numel() == 0) return mask;
  const int64_t length = m > 0 ? m : l.feats;
  const int64_t k = m > 0 ? n : keep;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, za.scalar_type(), "mask_select_cpu", [&] {
    if (length * kLanes <= kMaxTileKeys) {
      mask_blend_tiles<scalar_t, kLanes, false>(nullptr, za.data_ptr<scalar_t>(), nullptr, mask.data_ptr<bool>(), l,
                                                length, k, signed_score);
    } else {
      mask_blend_tiles<scalar_t, 1, false>(nullptr, za.data_ptr<scalar_t>(), nullptr, mask.data_ptr<bool>(), l,
                                           length, k, signed_score);
    }
  });
  return mask;
}

std::tuple<at::Tensor, at::Tensor> mask_blend_backward_cpu(const at::Tensor& grad_in, const at::Tensor& mask_in) {
  check_mask_blend_backward_args(grad_in, mask_in);
  // The gradient of out.sum() is an expanded scalar (all strides 0): read it once instead of
  // materializing it with .contiguous().
  bool broadcast_scalar = grad_in.numel() > 0;
  for (int64_t d = 0; d < grad_in.dim(); ++d) broadcast_scalar = broadcast_scalar && grad_in.stride(d) == 0;
  const at::Tensor grad = broadcast_scalar ? grad_in : grad_in.contiguous();
  const at::Tensor mask = mask_in.contiguous();
  at::Tensor gz = empty_output(grad.sizes(), grad.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor gza = empty_output(grad.sizes(), grad.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t count = grad.numel();
  // Bitwise select on the raw bits (branch-free, vectorizes): gz = bits(g) & -m, gza = bits(g) & (m - 1).
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "mask_blend_backward_cpu", [&] {
    using U = std::conditional_t<sizeof(scalar_t) == 8, uint64_t,
                                 std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint16_t>>;
    static_assert(sizeof(U) == sizeof(scalar_t), "bit type");
    const U* g = reinterpret_cast<const U*>(grad.data_ptr<scalar_t>());
    const uint8_t* mk = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
    U* a = reinterpret_cast<U*>(gz.data_ptr<scalar_t>());
    U* b = reinterpret_cast<U*>(gza.data_ptr<scalar_t>());
    at::parallel_for(0, count, kGrain, [&](int64_t begin, int64_t end) {
      if (broadcast_scalar) {
        const U g0 = g[0];
        for (int64_t i = begin; i < end; ++i) {
          const U keep = static_cast<U>(0) - static_cast<U>(mk[i]);
          a[i] = g0 & keep;
          b[i] = g0 & static_cast<U>(~keep);
        }
      } else {
        for (int64_t i = begin; i < end; ++i) {
          const U keep = static_cast<U>(0) - static_cast<U>(mk[i]);
          a[i] = g[i] & keep;
          b[i] = g[i] & static_cast<U>(~keep);
        }
      }
    });
  });
  return {gz, gza};
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("mask_blend", &fastnoise::mask_blend_cpu);
  m.impl("mask_select", &fastnoise::mask_select_cpu);
  m.impl("mask_blend_backward", &fastnoise::mask_blend_backward_cpu);
}
