// Host-callable launchers of the CUDA ternary projection kernels (plain CUDA types; see cuda.cu).
// Floating buffers are float32 (is_double = false) or float64 (is_double = true); `packed` is the
// int32 [2, k, ceil(d/32)] P of ternary.h; all pointers are device pointers of contiguous tensors.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace fastnoise {
// out: int32 [2, k, ceil(d/32)]; state: device int64[2] = (seed, offset).
cudaError_t launch_ternary_generate(int32_t* out, const int64_t* state, int64_t k, int64_t d, cudaStream_t stream);
// y [N, k] = scale * x [N, d] P^T
cudaError_t launch_ternary_project(const void* x, const int32_t* packed, void* y, int64_t N, int64_t d, int64_t k,
                                   double scale, bool is_double, cudaStream_t stream);
// out [N, d] = scale * g [N, k] P
cudaError_t launch_ternary_project_t(const void* g, const int32_t* packed, void* out, int64_t N, int64_t d,
                                     int64_t k, double scale, bool is_double, cudaStream_t stream);
// Conv geometry: x [B, C, H, W] -> y [B, groups*k, Ho, Wo].
struct TernaryConvShape {
  int64_t B, C, H, W, Ho, Wo, k, kh, kw, sh, sw, ph, pw, dh, dw, groups;
};
cudaError_t launch_ternary_conv_project(const void* x, const int32_t* packed, void* y, const TernaryConvShape& s,
                                        double scale, bool is_double, cudaStream_t stream);
}  // namespace fastnoise
