// Torch-side dtype helpers shared by the CPU kernels and the CUDA glue (torch headers).
#pragma once
#include <ATen/ATen.h>

#include "common/dtype.h"

namespace fastnoise {

// The launcher code (common/dtype.h) of a floating dtype; `what` names the tensor in the error.
inline int dtype_code(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return kDtypeF32;
    case at::kHalf: return kDtypeF16;
    case at::kBFloat16: return kDtypeBF16;
    case at::kDouble: return kDtypeF64;
    default: TORCH_CHECK(false, what, " must be float32, float16, bfloat16 or float64, got ", t);
  }
  return -1;
}

// The type kernels compute in: float64 for float64 data, float32 otherwise (float16 / bfloat16 / float32).
inline at::ScalarType math_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace fastnoise
