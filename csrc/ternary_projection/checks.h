// Argument checks of the ternary projection kernels, shared by the CPU kernels and the CUDA glue.
#pragma once
#include <ATen/ATen.h>

#include "common/dtype_aten.h"
#include "ternary_projection/ternary.h"

namespace fastnoise {

// packed: int32 [2, k, ceil(d/32)] on the device of `like`; returns k.
inline int64_t check_packed(const at::Tensor& packed, int64_t d, const at::Tensor& like) {
  TORCH_CHECK(d >= 1, "d must be >= 1, got ", d);
  TORCH_CHECK(packed.scalar_type() == at::kInt && packed.dim() == 3 && packed.size(0) == 2 &&
                  packed.size(2) == ternary_words(d),
              "packed must be an int32 tensor [2, k, ceil(d/32)] = [2, k, ", ternary_words(d), "], got ",
              packed.scalar_type(), " ", packed.sizes());
  TORCH_CHECK(packed.size(1) >= 1, "packed must have k >= 1 rows");
  TORCH_CHECK(packed.device() == like.device(), "packed must be on ", like.device(), ", got ", packed.device());
  return packed.size(1);
}

inline void check_float_input(const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, name, " must be ", dim, "-D, got shape ", t.sizes());
}

// Kernels compute in float32 (float16 / bfloat16 / float32 inputs) or float64 (common/dtype_aten.h).
inline at::ScalarType compute_type(const at::Tensor& t) { return math_type(t.scalar_type()); }

}  // namespace fastnoise
