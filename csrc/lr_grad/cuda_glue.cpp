// Binds the CUDA lr_grad launcher to fastnoise_kernels::lr_grad for CUDA tensors (lr_pack_bits has no
// CUDA kernel: fastnoise.ops.pack_spikes packs with torch ops off the CPU).
#include <torch/library.h>

#include <tuple>

#include "common/dtype_aten.h"
#include "cuda_glue.h"
#include "lr_grad/args.h"
#include "lr_grad/launch.h"

namespace fastnoise {
namespace {

// the launcher code of x: its dtype code (common/dtype_aten.h), or kLRBits for packed bits
int x_kind(const at::Tensor& x) {
  return x.scalar_type() == at::kInt ? kLRBits : dtype_code(x.scalar_type(), "x (or int32 packed bits)");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lr_grad_cuda(const at::Tensor& x_, const at::Tensor& losses_,
                                                            const at::Tensor& sigma_, const at::Tensor& state,
                                                            int64_t rows, int64_t repeat, int64_t k, bool sign) {
  const LRShape s = lr_check(x_, losses_, sigma_, rows, repeat, k);
  TORCH_CHECK(x_.is_cuda(), "x must be a CUDA tensor");
  check_cuda_state(state, x_);
  const c10::cuda::CUDAGuard guard(x_.device());
  const auto opt = sigma_.options();
  if (s.rows == 0 || s.N == 0) return {at::zeros({s.N, s.K}, opt), at::zeros({s.N}, opt), at::zeros({s.N}, opt)};
  const at::Tensor x = x_.contiguous(), losses = losses_.contiguous(), sigma = sigma_.contiguous();
  at::Tensor gw = at::empty({s.N, s.K}, opt), gb = at::empty({s.N}, opt), gs = at::empty({s.N}, opt);
  FASTNOISE_CUDA_CHECK(launch_lr_grad(x_kind(x), x.data_ptr(), losses.data_ptr(), sigma.data_ptr(),
                                      state.data_ptr<int64_t>(), s.Rx, s.K, s.N, s.M, s.J, s.repeat, sign,
                                      gw.data_ptr(), gb.data_ptr(), gs.data_ptr(), c10::cuda::getCurrentCUDAStream()));
  return {gw, gb, gs};
}

at::Tensor lif_noise_cuda(const at::Tensor& pre_, const at::Tensor& sigma_, const at::Tensor& state, int64_t T,
                          int64_t C, int64_t inner, double decay, double threshold) {
  const LIFShape s = lif_check(pre_, sigma_, T, C, inner);
  TORCH_CHECK(pre_.is_cuda(), "pre must be a CUDA tensor");
  check_cuda_state(state, pre_);
  const c10::cuda::CUDAGuard guard(pre_.device());
  const at::Tensor pre = pre_.contiguous(), sigma = sigma_.contiguous();
  at::Tensor out = at::empty({T, s.B * C, s.F}, pre.options());
  FASTNOISE_CUDA_CHECK(launch_lif_noise(x_kind(pre), pre.data_ptr(), sigma.data_ptr(), state.data_ptr<int64_t>(),
                                        out.data_ptr(), s.S, s.B, s.F, T, C, inner, decay, threshold,
                                        c10::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) {
  m.impl("lr_grad", &fastnoise::lr_grad_cuda);
  m.impl("lif_noise", &fastnoise::lif_noise_cuda);
}
