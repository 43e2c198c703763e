// Helpers shared by the C++ kernels (CPU and CUDA glue): argument checks and RNG state.
#pragma once
#include <ATen/ATen.h>
#include <cstdint>

namespace fastnoise {

struct RngState {
  uint64_t seed;
  uint64_t offset;
};

// state: int64[2] = (seed, offset) on the CPU.
inline RngState read_rng_state(const at::Tensor& state) {
  TORCH_CHECK(state.scalar_type() == at::kLong && state.numel() == 2,
              "rng state must be an int64 tensor of 2 elements (seed, offset), got ", state.scalar_type(),
              " with ", state.numel(), " elements");
  TORCH_CHECK(state.device().is_cpu(), "rng state must be on the CPU for CPU kernels");
  auto s = state.contiguous();
  const int64_t* p = s.data_ptr<int64_t>();
  return {static_cast<uint64_t>(p[0]), static_cast<uint64_t>(p[1])};
}

// Grain size for at::parallel_for over elementwise work.
constexpr int64_t kGrain = 16384;

}  // namespace fastnoise
