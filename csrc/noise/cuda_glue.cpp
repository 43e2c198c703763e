// Binds the CUDA noise launchers to fastnoise_kernels::noise_forward / noise_backward for CUDA tensors.
#include <torch/library.h>

#include <tuple>

#include "cuda_glue.h"
#include "noise/args.h"
#include "noise/launch.h"
#include "noise/noise_math.h"

namespace fastnoise {
namespace {

int noise_dtype(at::ScalarType t) { return dtype_code(t, "x"); }

NoiseParamPtr ptr(const NoiseParam& p) { return {p.t.data_ptr(), p.P, p.inner}; }

at::Tensor noise_forward_cuda(const at::Tensor& x_, const at::Tensor& a, const at::Tensor& b, const at::Tensor& state,
                              int64_t op, int64_t inner_a, int64_t inner_b) {
  noise_check_op(op, x_);
  TORCH_CHECK(x_.is_cuda(), "x must be a CUDA tensor");
  check_cuda_state(state, x_);
  const c10::cuda::CUDAGuard guard(x_.device());
  const NoiseParam pa = noise_param("a", a, inner_a, x_), pb = noise_param("b", b, inner_b, x_);
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  FASTNOISE_CUDA_CHECK(launch_noise_forward(noise_dtype(x.scalar_type()), static_cast<int>(op), x.data_ptr(),
                                            y.data_ptr(), x.numel(), ptr(pa), ptr(pb), state.data_ptr<int64_t>(),
                                            c10::cuda::getCurrentCUDAStream()));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> noise_backward_cuda(const at::Tensor& grad_, const at::Tensor& x_,
                                                                   const at::Tensor& a, const at::Tensor& b,
                                                                   const at::Tensor& state, int64_t op,
                                                                   int64_t inner_a, int64_t inner_b, int64_t need) {
  noise_check_op(op, grad_);
  TORCH_CHECK(grad_.is_cuda(), "grad must be a CUDA tensor");
  check_cuda_state(state, grad_);
  const c10::cuda::CUDAGuard guard(grad_.device());
  const NoiseParam pa = noise_param("a", a, inner_a, grad_), pb = noise_param("b", b, inner_b, grad_);
  const at::Tensor g = grad_.contiguous();
  const bool uses_x = op != kNoiseAdd;
  const at::Tensor x = uses_x ? x_.contiguous() : g;
  if (uses_x) {
    TORCH_CHECK(x.sizes() == g.sizes() && x.scalar_type() == g.scalar_type() && x.device() == g.device(),
                "x must have the shape, dtype and device of grad");
  }
  const int64_t n = g.numel();
  const auto mopt = g.options().dtype(noise_math_type(g.scalar_type()));
  at::Tensor gx = (need & kNeedX) ? at::empty(g.sizes(), g.options()) : at::empty({0}, g.options());
  at::Tensor ga = at::empty({(need & kNeedA) ? n : 0}, mopt);
  at::Tensor gb = at::empty({(need & kNeedB) ? n : 0}, mopt);
  FASTNOISE_CUDA_CHECK(launch_noise_backward(
      noise_dtype(g.scalar_type()), static_cast<int>(op), g.data_ptr(), x.data_ptr(),
      (need & kNeedX) ? gx.data_ptr() : nullptr, (need & kNeedA) ? ga.data_ptr() : nullptr,
      (need & kNeedB) ? gb.data_ptr() : nullptr, n, ptr(pa), ptr(pb), state.data_ptr<int64_t>(),
      c10::cuda::getCurrentCUDAStream()));
  // per-element terms -> [P] gradients (sum over the broadcast dims, on the current stream)
  auto reduce = [&](const at::Tensor& t, const at::Tensor& p, int64_t inner) {
    if (t.numel() == 0) return t;
    const int64_t P = p.numel() == 0 ? 1 : p.numel();
    return t.view({n / (P * inner), P, inner}).sum(at::IntArrayRef{0, 2});
  };
  return {gx, (need & kNeedA) ? reduce(ga, a, inner_a) : ga, (need & kNeedB) ? reduce(gb, b, inner_b) : gb};
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("noise_forward", &fastnoise::noise_forward_cuda);
  m.impl("noise_backward", &fastnoise::noise_backward_cuda);
}
