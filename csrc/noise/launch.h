// Host-callable launchers of the CUDA noise kernels (plain CUDA types; see cuda.cu and noise_math.h).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/param_layout.h"

namespace fastnoise {

// dtype of x / y / grad: a code of common/dtype.h. Parameters a, b are in the math type (double for
// float64, float otherwise) in the layout of common/param_layout.h: element i uses a[(i / inner_a) % P].

// y = op(x, a, b, delta); state: device int64[2] = (seed, offset).
cudaError_t launch_noise_forward(int dtype, int op, const void* x, void* y, int64_t n, NoiseParamPtr a,
                                 NoiseParamPtr b, const int64_t* state, cudaStream_t stream);

// grad_x (x's dtype), per-element grad_a / grad_b terms (math type); a null output is skipped.
cudaError_t launch_noise_backward(int dtype, int op, const void* grad, const void* x, void* grad_x, void* grad_a,
                                  void* grad_b, int64_t n, NoiseParamPtr a, NoiseParamPtr b, const int64_t* state,
                                  cudaStream_t stream);

}  // namespace fastnoise
