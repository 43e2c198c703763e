// Binds the CUDA Philox launcher to fastnoise_kernels::philox for CUDA tensors.
#include <torch/library.h>

#include "cuda_glue.h"
#include "rng/launch.h"

namespace fastnoise {
namespace {

at::Tensor philox_cuda(const at::Tensor& state, int64_t count, int64_t kind) {
  TORCH_CHECK(count >= 0, "count must be >= 0, got ", count);
  TORCH_CHECK(kind >= 0 && kind <= 2, "kind must be 0 (raw), 1 (uniform) or 2 (normal), got ", kind);
  check_cuda_state(state, state);
  const c10::cuda::CUDAGuard guard(state.device());
  at::Tensor out = at::empty({count}, state.options().dtype(kind == 0 ? at::kLong : at::kFloat));
  FASTNOISE_CUDA_CHECK(launch_philox(out.data_ptr(), state.data_ptr<int64_t>(), count, static_cast<int>(kind),
                                     c10::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CUDA, m) { m.impl("philox", &fastnoise::philox_cuda); }
