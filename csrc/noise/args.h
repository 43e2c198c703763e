// Argument checks of the noise kernels, shared by the CPU kernel and the CUDA glue (torch headers).
// The parameter layout (NoiseParam, noise_param) is shared by every op family: common/param_layout_aten.h.
#pragma once
#include <ATen/ATen.h>

#include "common/param_layout_aten.h"

namespace fastnoise {

inline void noise_check_op(int64_t op, const at::Tensor& x) {
  TORCH_CHECK(op >= 0 && op <= 2, "op must be 0 (add), 1 (mul) or 2 (sal), got ", op);
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble,
              "x must be float32, float16, bfloat16 or float64, got ", t);
}

}  // namespace fastnoise
