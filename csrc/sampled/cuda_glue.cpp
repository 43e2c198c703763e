// Binds the CUDA sampled-product launcher (sampled/cuda.cu) to fastnoise_kernels::sampled_linear,
// sampled_conv2d, channel_conv2d; the backwards are the dense ones on masked gradients
// (sampled/aten_common.h), shared with the CPU kernels.
#include <torch/library.h>

#include <tuple>

#include "common/dtype_aten.h"
#include "cuda_glue.h"
#include "sampled/aten_common.h"
#include "sampled/launch.h"

namespace fastnoise {
namespace {

// x viewed as [B, C, H, W] (any strides), weight as [N, Kg]; `mask` [B, N, Ho, Wo] (position) or
// `keep` [B, N] (channel, channel = true). Returns the contiguous [B, N, Ho, Wo] output.
at::Tensor run_sampled(const at::Tensor& x, at::IntArrayRef x_strides, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, const at::Tensor& sel, const ConvGeom& g,
                       bool channel) {
  const int code = dtype_code(x.scalar_type(), "sampled products: x");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({g.B, g.N, g.Ho, g.Wo}, x.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK(((g.Ng + kSampledBlockN - 1) / kSampledBlockN) * g.groups <= kSampledMaxColumnBlocks,
              "sampled products (cuda): too many output-channel tiles (groups = ", g.groups, ", ", g.Ng,
              " channels per group); at most ", kSampledMaxColumnBlocks, " tiles of ", kSampledBlockN);
  const at::Tensor w = weight.contiguous();
  at::Tensor b;
  if (bias.has_value()) b = bias->contiguous();
  at::Tensor mask, perm, count;
  if (channel) {
    // each (sample, group)'s channels with the kept ones first (stable: index order), and their count
    const at::Tensor kg = sel.reshape({g.B, g.groups, g.Ng});
    perm = at::argsort(at::logical_not(kg).to(at::kChar), /*stable=*/true, /*dim=*/-1).to(at::kInt).contiguous();
    count = kg.sum(-1, /*keepdim=*/false, at::kInt).contiguous();
  } else {
    mask = sel.contiguous();
  }
  SampledArgs a{};
  a.x = x.data_ptr();
  a.weight = w.data_ptr();
  a.bias = b.defined() ? b.data_ptr() : nullptr;
  a.mask = channel ? nullptr : mask.data_ptr<bool>();
  a.perm = channel ? perm.data_ptr<int32_t>() : nullptr;
  a.count = channel ? count.data_ptr<int32_t>() : nullptr;
  a.out = out.data_ptr();
  a.sxb = x_strides[0];
  a.sxc = x_strides[1];
  a.sxh = x_strides[2];
  a.sxw = x_strides[3];
  FASTNOISE_CUDA_CHECK(launch_sampled_product(g, a, code, c10::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor sampled_linear_cuda(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               const at::Tensor& mask) {
  check_sampled_inputs(x, weight, bias, mask);
  const ConvGeom g = linear_geom(x, weight, mask);
  const int64_t strides[4] = {x.stride(0), x.stride(1), 0, 0};
  return run_sampled(x, strides, weight, bias, mask, g, false).view({g.B, g.N});
}

at::Tensor sampled_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               const at::Tensor& mask, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, mask);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_position_mask(mask, g);
  return run_sampled(x, x.strides(), weight, bias, mask, g, false);
}

at::Tensor channel_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               const at::Tensor& keep, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
  check_sampled_inputs(x, weight, bias, keep);
  const ConvGeom g = conv_geom(x, weight, stride, padding, dilation, groups);
  check_channel_keep(keep, g);
  return run_sampled(x, x.strides(), weight, bias, keep, g, true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_linear_backward_cuda(const at::Tensor& grad,
                                                                            const at::Tensor& x,
                                                                            const at::Tensor& weight,
                                                                            const at::Tensor& mask) {
  const c10::cuda::CUDAGuard guard(x.device());
  return sampled_linear_backward_dense(grad, x, weight, mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_conv2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& mask,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const c10::cuda::CUDAGuard guard(x.device());
  return sampled_conv2d_backward_dense(grad, x, weight, mask, stride, padding, dilation, groups);
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("sampled_linear", &fastnoise::sampled_linear_cuda);
  m.impl("sampled_linear_backward", &fastnoise::sampled_linear_backward_cuda);
  m.impl("sampled_conv2d", &fastnoise::sampled_conv2d_cuda);
  m.impl("channel_conv2d", &fastnoise::channel_conv2d_cuda);
  m.impl("sampled_conv2d_backward", &fastnoise::sampled_conv2d_backward_cuda);
}
