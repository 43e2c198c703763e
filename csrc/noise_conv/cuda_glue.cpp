// Binds the CUDA noise-conv kernel (noise_conv/cuda.cu) to fastnoise_kernels::noise_conv2d for CUDA tensors:
// the amplitudes s (std on the device, no host synchronisation), the weight noise W' and the batch-shared
// factors (compose.h, small), then the fused implicit-GEMM launch. With scale_by_std on the output the
// noise needs std(y0) of the finished output: the kernel writes y0, then compose.h adds the noise. The
// backward is compose.h's (shared with the CPU kernel).
#include <torch/library.h>

#include <tuple>

#include "common/dtype_aten.h"
#include "cuda_glue.h"
#include "noise_conv/compose.h"
#include "noise_conv/launch.h"

namespace fastnoise {
namespace {

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

std::tuple<at::Tensor, at::Tensor> noise_conv2d_cuda(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, const at::Tensor& in_a,
    const at::Tensor& in_b, const at::Tensor& w_alpha, const c10::optional<at::Tensor>& w_mask,
    const at::Tensor& out_sigma, const at::Tensor& state, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef cfg, at::ArrayRef<double> scales) {
  TORCH_CHECK(x.is_cuda(), "noise_conv2d (cuda): x must be a CUDA tensor");
  check_cuda_state(state, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const NcArgs a = nc_forward_args(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding,
                                   dilation, groups, cfg, scales);
  const NoiseConvConfig& c = a.c;
  const ConvGeom& g = a.g;
  TORCH_CHECK(((g.Ng + kNcBlockN - 1) / kNcBlockN) * g.groups <= kNcMaxColumnBlocks,
              "noise_conv2d (cuda): too many output-channel tiles (groups = ", g.groups, ", ", g.Ng,
              " channels per group)");
  const auto one = at::ones({}, x.options().dtype(a.md));
  at::Tensor s_in = one, s_w = one, s_out = one;
  NoiseConvArgs k{};
  at::Tensor fin, pa, pb, fout, po;
  k.in_mode = kNcFusedInNone;
  if (c.in_mode != kNcInNone) {
    s_in = nc_amp(x, c.in_std, scales[0], a.md);
    if (c.in_shared) {
      fin = nc_input_factor(a, s_in).contiguous();
      k.in_mode = c.in_mode == kNcInMul ? kNcFusedInFactorMul : kNcFusedInFactorAdd;
    } else {
      pb = (in_b * s_in).contiguous();
      if (c.in_mode == kNcInMul) pa = in_a.contiguous();
      k.in_mode = c.in_mode == kNcInMul ? kNcFusedInMul : kNcFusedInAdd;
    }
  }
  at::Tensor wp = weight.contiguous();
  if (c.w_mode != kNcWNone) {
    s_w = nc_amp(weight, c.w_std, scales[1], a.md);
    wp = nc_weight_prime(a, nc_weight_noise(a, s_w));
  }
  const bool late = c.out_mode != kNcOutNone && c.out_std;
  k.out_mode = kNcFusedOutNone;
  if (c.out_mode != kNcOutNone && !late) {
    s_out = at::full({}, scales[2], x.options().dtype(a.md));
    if (c.out_shared) {
      fout = (nc_expand(out_sigma, c.out_inner, a.lay.nl) * s_out * nc_normals(a, a.lay.base_out, a.lay.nl))
                 .contiguous();
      k.out_mode = kNcFusedOutFactor;
    } else {
      po = (out_sigma * s_out).contiguous();
      k.out_mode = kNcFusedOutAdd;
    }
  }
  at::Tensor b;
  if (bias.has_value()) b = bias->contiguous();
  at::Tensor y = at::empty({g.B, g.N, g.Ho, g.Wo}, x.options());
  if (y.numel() > 0) {
    k.x = x.data_ptr();
    k.weight = wp.data_ptr();
    k.bias = ptr_or_null(b);
    k.out = y.data_ptr();
    k.sxb = x.stride(0);
    k.sxc = x.stride(1);
    k.sxh = x.stride(2);
    k.sxw = x.stride(3);
    k.fin = ptr_or_null(fin);
    k.pa = ptr_or_null(pa);
    k.Pa = pa.defined() ? pa.numel() : 1;
    k.inner_a = c.in_inner_a;
    k.pb = ptr_or_null(pb);
    k.Pb = pb.defined() ? pb.numel() : 1;
    k.inner_b = c.in_inner_b;
    k.fout = ptr_or_null(fout);
    k.po = ptr_or_null(po);
    k.Po = po.defined() ? po.numel() : 1;
    k.inner_o = c.out_inner;
    k.state = state.data_ptr<int64_t>();
    k.base_in = a.lay.base_in;
    k.base_out = a.lay.base_out;
    FASTNOISE_CUDA_CHECK(launch_noise_conv(g, k, dtype_code(x.scalar_type(), "noise_conv2d: x"), c10::cuda::getCurrentCUDAStream()));
  }
  if (late) {
    s_out = nc_amp(y, true, scales[2], a.md);
    if (y.numel() > 0) y = nc_output_apply(a, y, s_out);
  }
  return {y, nc_stats(s_in, s_w, s_out)};
}

NcGrads noise_conv2d_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                                   const at::Tensor& in_a, const at::Tensor& in_b, const at::Tensor& w_alpha,
                                   const c10::optional<at::Tensor>& w_mask, const at::Tensor& out_sigma,
                                   const at::Tensor& state, const at::Tensor& stats, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                   at::IntArrayRef cfg, int64_t need) {
  TORCH_CHECK(x.is_cuda(), "noise_conv2d_backward (cuda): x must be a CUDA tensor");
  check_cuda_state(state, x);
  const c10::cuda::CUDAGuard guard(x.device());
  return nc_backward_op(grad, x, weight, in_a, in_b, w_alpha, w_mask, out_sigma, state, stats, stride, padding,
                        dilation, groups, cfg, need);
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("noise_conv2d", &fastnoise::noise_conv2d_cuda);
  m.impl("noise_conv2d_backward", &fastnoise::noise_conv2d_backward_cuda);
}
