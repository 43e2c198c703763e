// Host-callable launchers of the CUDA mask_blend kernels (plain CUDA types; see cuda.cu).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/dtype.h"

namespace fastnoise {

// dtype: a code of common/dtype.h (the dtype of z / za / out / grad).

// z, za, out: contiguous [outer, feats, inner] of `dtype`; mask: bool, same layout.
// A row is `length` features (length = feats for top-k, = M for N:M) `inner` elements apart; keep
// the k largest scores of each row (ties: lower index), score |za| or za (signed_score).
// z = out = nullptr: the mask only (mask_select).
cudaError_t launch_mask_blend(const void* z, const void* za, void* out, bool* mask, int dtype, int64_t outer,
                              int64_t feats, int64_t inner, int64_t length, int64_t k, bool signed_score,
                              cudaStream_t stream);

// gz = mask ? grad : 0, gza = mask ? 0 : grad over `count` contiguous elements.
cudaError_t launch_mask_blend_backward(const void* grad, const bool* mask, void* gz, void* gza, int dtype,
                                       int64_t count, cudaStream_t stream);

}  // namespace fastnoise
