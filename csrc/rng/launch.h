// Host-callable launcher of the CUDA Philox kernel (plain CUDA types; see cuda.cu).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace fastnoise {
// out: int64[count] for kind 0 (raw), float32[count] for 1 (uniform) and 2 (normal).
// state: device int64[2] = (seed, offset).
cudaError_t launch_philox(void* out, const int64_t* state, int64_t count, int kind, cudaStream_t stream);
}  // namespace fastnoise
