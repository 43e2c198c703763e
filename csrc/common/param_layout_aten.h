// Torch-side checks of broadcast parameters in the kernel layout (common/param_layout.h), shared by the
// CPU kernels and the CUDA glue (torch headers).
#pragma once
#include <ATen/ATen.h>

#include "common/dtype_aten.h"

namespace fastnoise {

// A broadcast parameter in the kernel layout: a contiguous 1-D tensor of P values in the math type;
// element i of x uses value (i / inner) % P. An empty tensor means "unused" (the op has no b).
struct NoiseParam {
  at::Tensor t;
  int64_t P;
  int64_t inner;
};

inline at::ScalarType noise_math_type(at::ScalarType t) { return math_type(t); }

inline NoiseParam noise_param(const char* name, const at::Tensor& p, int64_t inner, const at::Tensor& x) {
  TORCH_CHECK(p.dim() == 1, name, " must be a 1-D parameter tensor in the kernel layout, got ", p.dim(), " dims");
  TORCH_CHECK(p.scalar_type() == noise_math_type(x.scalar_type()), name, " must have dtype ",
              noise_math_type(x.scalar_type()), " for x of dtype ", x.scalar_type(), ", got ", p.scalar_type());
  TORCH_CHECK(p.device() == x.device(), name, " must be on ", x.device(), ", got ", p.device());
  TORCH_CHECK(inner >= 1, "inner of ", name, " must be >= 1, got ", inner);
  if (p.numel() == 0) {  // unused parameter: one zero
    return {at::zeros({1}, p.options()), 1, 1};
  }
  return {p.contiguous(), p.numel(), inner};
}

}  // namespace fastnoise
