// Shared by the CUDA kernels: plain CUDA headers only (no torch), so that every .cu compiles
// with nvcc alone (CMake target cuda_compile_check).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace fastnoise {

// Grid for a grid-stride loop over n work items with `threads` per block.
inline unsigned grid_for(int64_t n, int threads, int max_blocks = 65535 * 8) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

}  // namespace fastnoise
