// CPU kernels of mask_blend: per-row top-k / N:M selection on order-preserving keys, then the blend
// out = mask ? z : za, in one pass per row; and the fused backward (grad -> grad*m, grad*(1-m)).
//
// The tensor is viewed as [outer, F, inner] (dim = the F axis), so dim=1 of NCHW needs no transpose:
// rows of inner > 1 are handled in tiles of up to 16 neighbouring positions, whose keys are gathered
// with contiguous reads into a [tile, F] buffer.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common.h"
#include "mask_blend/args.h"
#include "mask_blend/keys.h"
#include "mask_blend/select.h"

namespace fastnoise {
namespace {

using Layout = MaskBlendLayout;

template <typename scalar_t>
void mask_blend_rows(const scalar_t* z, const scalar_t* za, scalar_t* out, bool* mask, Layout l, int64_t k,
                     int64_t group, bool signed_score) {
  using K = typename KeyOf<scalar_t>::type;
  using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
  const int64_t F = l.feats, inner = l.inner;
  const int64_t tile = std::min<int64_t>(inner, 16);
  const int64_t tiles_per_outer = (inner + tile - 1) / tile;
  const int64_t items = l.outer * tiles_per_outer;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, F * tile));
  at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) {
    std::vector<K> keys(tile * F), work(F);
    std::vector<uint8_t> sel(tile * F);
    for (int64_t it = begin; it < end; ++it) {
      const int64_t o = it / tiles_per_outer;
      const int64_t i0 = (it % tiles_per_outer) * tile;
      const int64_t t_n = std::min(tile, inner - i0);
      const int64_t base = o * F * inner + i0;
      // gather keys[t * F + f] = key(za[base + f * inner + t])
      if (inner == 1) {
        const scalar_t* row = za + base;
        for (int64_t f = 0; f < F; ++f) keys[f] = score_key(static_cast<acc_t>(row[f]), signed_score);
      } else {
        for (int64_t f = 0; f < F; ++f) {
          const scalar_t* p = za + base + f * inner;
          for (int64_t t = 0; t < t_n; ++t) keys[t * F + f] = score_key(static_cast<acc_t>(p[t]), signed_score);
        }
      }
      for (int64_t t = 0; t < t_n; ++t) {
        for (int64_t g0 = 0; g0 < F; g0 += group) {
          select_row<K>(keys.data() + t * F + g0, group, k, work.data(), sel.data() + t * F + g0);
        }
      }
      // blend
      if (inner == 1) {
        const scalar_t* zr = z + base;
        const scalar_t* ar = za + base;
        scalar_t* orow = out + base;
        bool* mrow = mask + base;
        for (int64_t f = 0; f < F; ++f) {
          const bool s = sel[f];
          orow[f] = s ? zr[f] : ar[f];
          mrow[f] = s;
        }
      } else {
        for (int64_t f = 0; f < F; ++f) {
          const int64_t off = base + f * inner;
          for (int64_t t = 0; t < t_n; ++t) {
            const bool s = sel[t * F + f];
            out[off + t] = s ? z[off + t] : za[off + t];
            mask[off + t] = s;
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> mask_blend_cpu(const at::Tensor& z_in, const at::Tensor& za_in, int64_t keep,
                                                  int64_t n, int64_t m, bool signed_score, int64_t dim) {
  const Layout l = check_mask_blend_args(z_in, za_in, keep, n, m, dim);
  const at::Tensor z = z_in.contiguous();
  const at::Tensor za = za_in.contiguous();
  at::Tensor out = at::empty(z.sizes(), z.options());
  at::Tensor mask = at::empty(z.sizes(), z.options().dtype(at::kBool));
  if (z.numel() == 0) return {out, mask};
  const int64_t group = m > 0 ? m : l.feats;
  const int64_t k = m > 0 ? n : keep;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "mask_blend_cpu", [&] {
    mask_blend_rows<scalar_t>(z.data_ptr<scalar_t>(), za.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                              mask.data_ptr<bool>(), l, k, group, signed_score);
  });
  return {out, mask};
}

std::tuple<at::Tensor, at::Tensor> mask_blend_backward_cpu(const at::Tensor& grad_in, const at::Tensor& mask_in) {
  check_mask_blend_backward_args(grad_in, mask_in);
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.contiguous();
  at::Tensor gz = at::empty(grad.sizes(), grad.options());
  at::Tensor gza = at::empty(grad.sizes(), grad.options());
  const int64_t count = grad.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "mask_blend_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const bool* mk = mask.data_ptr<bool>();
    scalar_t* a = gz.data_ptr<scalar_t>();
    scalar_t* b = gza.data_ptr<scalar_t>();
    const scalar_t zero(0);
    at::parallel_for(0, count, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const bool s = mk[i];
        a[i] = s ? g[i] : zero;
        b[i] = s ? zero : g[i];
      }
    });
  });
  return {gz, gza};
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("mask_blend", &fastnoise::mask_blend_cpu);
  m.impl("mask_blend_backward", &fastnoise::mask_blend_backward_cpu);
}
