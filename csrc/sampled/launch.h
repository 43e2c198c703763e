// Host-callable launcher of the CUDA sampled-product kernel (plain CUDA types; see cuda.cu).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/conv_geom.h"
#include "common/dtype.h"

namespace fastnoise {

// dtype of x / weight / bias / out: a code of common/dtype.h.

// Device pointers of one call. x is read through its strides (elements); weight is contiguous
// [N, Kg] (= [N, C/groups, kh, kw]); out is contiguous [B, N, Ho, Wo] and every element is written.
// Position granularity: `mask` is a contiguous bool [B, N, Ho, Wo], perm = count = nullptr.
// Channel granularity: mask = nullptr; perm int32 [B, groups, Ng] lists each (sample, group)'s
// channels with the kept ones first, count int32 [B, groups] how many are kept.
struct SampledArgs {
  const void* x;
  const void* weight;
  const void* bias;  // [N] or nullptr
  const bool* mask;
  const int32_t* perm;
  const int32_t* count;
  void* out;
  int64_t sxb, sxc, sxh, sxw;
};

// Largest number of (output-channel tile x group) blocks one launch supports (grid.y).
constexpr int64_t kSampledMaxColumnBlocks = 65535;
// Output channels per tile (columns of a block).
constexpr int kSampledBlockN = 64;

// out = where(selected, conv(x, weight, bias) with geometry g, 0). A linear layer is the conv with
// H = W = kh = kw = 1. Returns cudaErrorInvalidValue for a bad dtype or a grid over the limits.
cudaError_t launch_sampled_product(const ConvGeom& g, const SampledArgs& a, int dtype, cudaStream_t stream);

}  // namespace fastnoise
