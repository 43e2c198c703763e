// CPU kernels of the noise-conv family (fastnoise/ops/noise_conv.py; config and stream layout in
// noise_conv/config.h). Forward, in passes over memory:
//   input   per-sample noise: one prologue pass x -> x' with the Philox normals generated per 1024-element
//           chunk (the noise family's kernel, fastnoise_kernels::noise_forward); a batch-shared draw: the
//           [C*H*W] factor (mu + s sigma delta) once, then one broadcast multiply / add over x;
//   weight  W' = W + keep * s alpha eta on the weight (small: N*C*kh*kw elements);
//   conv    at::convolution (oneDNN on this torch build; measured fastest, docs/noise_conv.md), a linear
//           layer as one GEMM;
//   output  per-sample noise added in place by one epilogue pass over y (normals per chunk, below);
//           a batch-shared draw as one broadcast add of the [N*Ho*Wo] noise.
// Backward: compose.h (x' and W' rebuilt from the state, at::convolution_backward, the site gradients).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common.h"
#include "noise/noise_math.h"
#include "noise_conv/compose.h"
#include "normal_cpu.h"

namespace fastnoise {
namespace {

constexpr int64_t kChunk = 1024;

// y[i] += amp[(i / inner) % P] * normal(st, i) for every element i of the contiguous y, in place.
template <typename scalar_t>
void add_noise_inplace(at::Tensor& y, const at::Tensor& amp, int64_t inner, const RngState st) {
  using A = at::opmath_type<scalar_t>;
  scalar_t* yp = y.data_ptr<scalar_t>();
  const A* ap = amp.data_ptr<A>();
  const int64_t n = y.numel(), P = amp.numel();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) float d[kChunk];
    ParamIter it(begin, inner, P);
    for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
      const int64_t m = std::min(kChunk, end - c0);
      fill_normals_cpu(st.seed, st.offset, c0, c0 + m, d);
      scalar_t* yc = yp + c0;
      int64_t k = 0;
      while (k < m) {
        if (P == 1 || it.inner > 1) {  // a run of one amplitude
          const int64_t len = P == 1 ? m - k : std::min(m - k, it.inner - it.r);
          const A v = ap[it.p];
          for (int64_t j = k; j < k + len; ++j) yc[j] = static_cast<scalar_t>(static_cast<A>(yc[j]) + v * d[j]);
          k += len;
          if (P > 1) {
            it.r += len;
            if (it.r == it.inner) {
              it.r = 0;
              if (++it.p == P) it.p = 0;
            }
          }
        } else {  // inner == 1: a run of consecutive amplitudes
          const int64_t len = std::min(m - k, P - it.p);
          const A* pv = ap + it.p - k;
          for (int64_t j = k; j < k + len; ++j)
            yc[j] = static_cast<scalar_t>(static_cast<A>(yc[j]) + pv[j] * d[j]);
          k += len;
          it.p += len;
          if (it.p == P) it.p = 0;
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> noise_conv2d_cpu(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, const at::Tensor& in_a,
    const at::Tensor& in_b, const at::Tensor& w_alpha, const c10::optional<at::Tensor>& w_mask,
    const at::Tensor& out_sigma, const at::Tensor& state, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef cfg, at::ArrayRef<double> scales) {
  TORCH_CHECK(x.device().is_cpu(), "noise_conv2d (cpu): x must be a CPU tensor");
  const NcArgs a = nc_forward_args(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding,
                                   dilation, groups, cfg, scales);
  const NoiseConvConfig& c = a.c;
  const auto one = at::ones({}, x.options().dtype(a.md));
  at::Tensor s_in = one, s_w = one, s_out = one;
  at::Tensor xp = x, wp = weight;
  if (c.in_mode != kNcInNone) {
    s_in = nc_amp(x, c.in_std, scales[0], a.md);
    xp = nc_input_prime(a, s_in);
  }
  if (c.w_mode != kNcWNone) {
    s_w = nc_amp(weight, c.w_std, scales[1], a.md);
    wp = nc_weight_prime(a, nc_weight_noise(a, s_w));
  }
  at::Tensor y = nc_conv(a, xp, wp);
  if (c.out_mode != kNcOutNone) {
    s_out = nc_amp(y, c.out_std, scales[2], a.md);
    if (y.numel() > 0) {
      if (c.out_shared) {
        y = nc_output_apply(a, y, s_out);
      } else {
        const at::Tensor amp = (a.out_sigma * s_out).contiguous();
        RngState st = read_rng_state(state);
        st.offset += static_cast<uint64_t>(a.lay.base_out);
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "noise_conv2d_out_cpu",
                                        [&] { add_noise_inplace<scalar_t>(y, amp, c.out_inner, st); });
      }
    }
  }
  return {y, nc_stats(s_in, s_w, s_out)};
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("noise_conv2d", &fastnoise::noise_conv2d_cpu);
  // the dispatcher routes CPU tensors only here; nc_args checks every tensor against x
  m.impl("noise_conv2d_backward", &fastnoise::nc_backward_op);
}
