// Binds the CUDA mask_blend launchers to fastnoise_kernels::mask_blend / mask_blend_backward.
#include <torch/library.h>

#include <tuple>

#include "common/dtype_aten.h"
#include "cuda_glue.h"
#include "mask_blend/args.h"
#include "mask_blend/launch.h"

namespace fastnoise {
namespace {

std::tuple<at::Tensor, at::Tensor> mask_blend_cuda(const at::Tensor& z_in, const at::Tensor& za_in, int64_t keep,
                                                   int64_t n, int64_t m, bool signed_score, int64_t dim) {
  const MaskBlendLayout l = check_mask_blend_args(z_in, za_in, keep, n, m, dim);
  const int code = dtype_code(z_in.scalar_type(), "mask_blend: z");
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const at::Tensor za = za_in.contiguous();
  at::Tensor out = at::empty(z.sizes(), z.options());
  at::Tensor mask = at::empty(z.sizes(), z.options().dtype(at::kBool));
  if (z.numel() == 0) return {out, mask};
  const int64_t length = m > 0 ? m : l.feats;
  const int64_t k = m > 0 ? n : keep;
  FASTNOISE_CUDA_CHECK(launch_mask_blend(z.data_ptr(), za.data_ptr(), out.data_ptr(), mask.data_ptr<bool>(), code,
                                         l.outer, l.feats, l.inner, length, k, signed_score,
                                         c10::cuda::getCurrentCUDAStream()));
  return {out, mask};
}

at::Tensor mask_select_cuda(const at::Tensor& za_in, int64_t keep, int64_t n, int64_t m, bool signed_score,
                            int64_t dim) {
  const MaskBlendLayout l = check_mask_blend_args(za_in, za_in, keep, n, m, dim);
  const int code = dtype_code(za_in.scalar_type(), "mask_select: za");
  const c10::cuda::CUDAGuard guard(za_in.device());
  const at::Tensor za = za_in.contiguous();
  at::Tensor mask = at::empty(za.sizes(), za.options().dtype(at::kBool));
  if (za.numel() == 0) return mask;
  const int64_t length = m > 0 ? m : l.feats;
  const int64_t k = m > 0 ? n : keep;
  FASTNOISE_CUDA_CHECK(launch_mask_blend(nullptr, za.data_ptr(), nullptr, mask.data_ptr<bool>(), code, l.outer,
                                         l.feats, l.inner, length, k, signed_score,
                                         c10::cuda::getCurrentCUDAStream()));
  return mask;
}

std::tuple<at::Tensor, at::Tensor> mask_blend_backward_cuda(const at::Tensor& grad_in, const at::Tensor& mask_in) {
  check_mask_blend_backward_args(grad_in, mask_in);
  const int code = dtype_code(grad_in.scalar_type(), "mask_blend_backward: grad");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.contiguous();
  at::Tensor gz = at::empty(grad.sizes(), grad.options());
  at::Tensor gza = at::empty(grad.sizes(), grad.options());
  FASTNOISE_CUDA_CHECK(launch_mask_blend_backward(grad.data_ptr(), mask.data_ptr<bool>(), gz.data_ptr(),
                                                  gza.data_ptr(), code, grad.numel(),
                                                  c10::cuda::getCurrentCUDAStream()));
  return {gz, gza};
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("mask_blend", &fastnoise::mask_blend_cuda);
  m.impl("mask_select", &fastnoise::mask_select_cuda);
  m.impl("mask_blend_backward", &fastnoise::mask_blend_backward_cuda);
}
