// Host-callable launcher of the CUDA lr_grad kernel (plain CUDA types; see cuda.cu, fastnoise/ops/lr_grad.py).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/dtype.h"

namespace fastnoise {

// storage of x: a floating [Rx, K] matrix (its dtype code, common/dtype.h: kDtypeF32 .. kDtypeF64), or packed
// bits (int32 [Rx, ceil(K/32)]): kLRBits, the one code this family adds after the shared ones
enum LRXKind : int { kLRBits = 4 };
static_assert(kLRBits > kDtypeF64, "kLRBits must not collide with a dtype code");

// losses [M], sigma [N], outputs gw [N, K], gb [N], gs [N] in the math type (double for kDtypeF64 x, else float);
// state: device int64[2] = (seed, offset). J = rows / (Rx * repeat). Every output element is written.
cudaError_t launch_lr_grad(int xkind, const void* x, const void* losses, const void* sigma, const int64_t* state,
                           int64_t Rx, int64_t K, int64_t N, int64_t M, int64_t J, int64_t repeat, bool sign,
                           void* gw, void* gb, void* gs, cudaStream_t stream);

// lif_noise: pre [S, B, F] of `dtype` (a common/dtype.h code), sigma [F / inner] in the math type,
// out [T, B*C, F] spikes of `dtype`.
cudaError_t launch_lif_noise(int dtype, const void* pre, const void* sigma, const int64_t* state, void* out, int64_t S,
                             int64_t B, int64_t F, int64_t T, int64_t C, int64_t inner, double decay, double threshold,
                             cudaStream_t stream);

}  // namespace fastnoise
