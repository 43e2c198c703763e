// Shared by the CUDA glue files (compiled with torch headers in CUDA builds only).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#define FASTNOISE_CUDA_CHECK(expr)                                                   \
  do {                                                                               \
    cudaError_t _e = (expr);                                                         \
    TORCH_CHECK(_e == cudaSuccess, "CUDA error: ", cudaGetErrorString(_e), " in ", #expr); \
  } while (0)

namespace fastnoise {
inline void check_cuda_state(const at::Tensor& state, const at::Tensor& like) {
  TORCH_CHECK(state.scalar_type() == at::kLong && state.numel() == 2 && state.is_contiguous(),
              "rng state must be a contiguous int64 tensor of 2 elements (seed, offset)");
  TORCH_CHECK(state.device() == like.device(), "rng state must be on ", like.device(), ", got ", state.device());
}
}  // namespace fastnoise
