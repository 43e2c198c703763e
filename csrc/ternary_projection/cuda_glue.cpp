// Binds the CUDA ternary projection launchers to fastnoise_kernels::ternary_* for CUDA tensors.
// float16 / bfloat16 inputs are computed in float32 and cast back (as the CPU kernels do).
#include <torch/library.h>

#include "cuda_glue.h"
#include "ternary_projection/checks.h"
#include "ternary_projection/launch.h"

namespace fastnoise {
namespace {

at::Tensor ternary_generate_cuda(const at::Tensor& state, int64_t k, int64_t d) {
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  TORCH_CHECK(d >= 1, "d must be >= 1, got ", d);
  check_cuda_state(state, state);
  const c10::cuda::CUDAGuard guard(state.device());
  at::Tensor out = at::empty({2, k, ternary_words(d)}, state.options().dtype(at::kInt));
  FASTNOISE_CUDA_CHECK(launch_ternary_generate(out.data_ptr<int32_t>(), state.data_ptr<int64_t>(), k, d,
                                               c10::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor ternary_project_cuda(const at::Tensor& x, const at::Tensor& packed, double scale) {
  check_float_input("x", x, 2);
  const int64_t N = x.size(0), d = x.size(1);
  const int64_t k = check_packed(packed, d, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.to(compute_type(x)).contiguous();
  const at::Tensor pc = packed.contiguous();
  at::Tensor y = at::empty({N, k}, xc.options());
  FASTNOISE_CUDA_CHECK(launch_ternary_project(xc.data_ptr(), pc.data_ptr<int32_t>(), y.data_ptr(), N, d, k, scale,
                                              xc.scalar_type() == at::kDouble, c10::cuda::getCurrentCUDAStream()));
  return y.to(x.scalar_type());
}

at::Tensor ternary_project_t_cuda(const at::Tensor& g, const at::Tensor& packed, int64_t d, double scale) {
  check_float_input("g", g, 2);
  const int64_t N = g.size(0);
  const int64_t k = check_packed(packed, d, g);
  TORCH_CHECK(g.size(1) == k, "g must have k = ", k, " columns, got ", g.size(1));
  const c10::cuda::CUDAGuard guard(g.device());
  const at::Tensor gc = g.to(compute_type(g)).contiguous();
  const at::Tensor pc = packed.contiguous();
  at::Tensor out = at::empty({N, d}, gc.options());
  FASTNOISE_CUDA_CHECK(launch_ternary_project_t(gc.data_ptr(), pc.data_ptr<int32_t>(), out.data_ptr(), N, d, k,
                                                scale, gc.scalar_type() == at::kDouble,
                                                c10::cuda::getCurrentCUDAStream()));
  return out.to(g.scalar_type());
}

at::Tensor ternary_conv_project_cuda(const at::Tensor& x, const at::Tensor& packed, double scale, int64_t kh,
                                    int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                    int64_t dw, int64_t groups) {
  check_float_input("x", x, 4);
  TORCH_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0 && dh >= 1 && dw >= 1,
              "kernel size, stride and dilation must be >= 1 and padding >= 0");
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "groups must divide the channels of x (", x.size(1),
              "), got ", groups);
  TernaryConvShape s{x.size(0), x.size(1), x.size(2), x.size(3), 0, 0, 0, kh, kw, sh, sw, ph, pw, dh, dw, groups};
  s.k = check_packed(packed, x.size(1) / groups * kh * kw, x);
  s.Ho = conv_out(s.H, kh, sh, ph, dh);
  s.Wo = conv_out(s.W, kw, sw, pw, dw);
  TORCH_CHECK(s.Ho >= 1 && s.Wo >= 1, "the conv output would be empty: ", s.Ho, "x", s.Wo);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.to(compute_type(x)).contiguous();
  const at::Tensor pc = packed.contiguous();
  at::Tensor y = at::empty({s.B, groups * s.k, s.Ho, s.Wo}, xc.options());
  FASTNOISE_CUDA_CHECK(launch_ternary_conv_project(xc.data_ptr(), pc.data_ptr<int32_t>(), y.data_ptr(), s, scale,
                                                   xc.scalar_type() == at::kDouble,
                                                   c10::cuda::getCurrentCUDAStream()));
  return y.to(x.scalar_type());
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("ternary_generate", &fastnoise::ternary_generate_cuda);
  m.impl("ternary_project", &fastnoise::ternary_project_cuda);
  m.impl("ternary_project_t", &fastnoise::ternary_project_t_cuda);
  m.impl("ternary_conv_project", &fastnoise::ternary_conv_project_cuda);
}
