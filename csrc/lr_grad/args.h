// Argument checks of the lr_grad kernels, shared by the CPU kernel and the CUDA glue (torch headers).
// Layout and math: fastnoise/ops/lr_grad.py. x is a floating [Rx, K] matrix or packed bits int32
// [Rx, ceil(K / 32)]; losses [M] and sigma [N] in the math type (float64 for float64 x, else float32).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "common/dtype_aten.h"

namespace fastnoise {

struct LRShape {
  int64_t Rx, K, N, M, rows, repeat, J;  // J = rows / (Rx * repeat): passes over the input rows
  bool bits;
};

inline at::ScalarType lr_math_type(const at::Tensor& x) { return math_type(x.scalar_type()); }

inline LRShape lr_check(const at::Tensor& x, const at::Tensor& losses, const at::Tensor& sigma, int64_t rows,
                        int64_t repeat, int64_t k) {
  TORCH_CHECK(x.dim() == 2, "x must be 2-D [rows, features] (or packed bits [rows, ceil(k/32)]), got ", x.sizes());
  const bool bits = x.scalar_type() == at::kInt;
  const auto t = x.scalar_type();
  TORCH_CHECK(bits || t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble,
              "x must be float32, float16, bfloat16, float64 or int32 (packed bits), got ", t);
  TORCH_CHECK(k >= 0, "k must be >= 0, got ", k);
  if (bits) {
    TORCH_CHECK(x.size(1) == (k + 31) / 32, "packed x must have ceil(k/32) = ", (k + 31) / 32, " words per row, got ",
                x.size(1));
  } else {
    TORCH_CHECK(x.size(1) == k, "k must equal x.size(1) = ", x.size(1), ", got ", k);
  }
  const at::ScalarType md = lr_math_type(x);
  TORCH_CHECK(sigma.dim() == 1 && sigma.scalar_type() == md, "sigma must be a 1-D ", md, " tensor, got ",
              sigma.scalar_type(), " ", sigma.sizes());
  TORCH_CHECK(losses.dim() == 1 && losses.scalar_type() == md, "losses must be a 1-D ", md, " tensor, got ",
              losses.scalar_type(), " ", losses.sizes());
  TORCH_CHECK(sigma.device() == x.device() && losses.device() == x.device(), "losses and sigma must be on ",
              x.device());
  TORCH_CHECK(repeat >= 1, "repeat must be >= 1, got ", repeat);
  TORCH_CHECK(rows >= 0, "rows must be >= 0, got ", rows);
  const int64_t Rx = x.size(0), M = losses.numel();
  TORCH_CHECK(rows == 0 || (Rx > 0 && rows % (Rx * repeat) == 0), "rows must be a multiple of x rows * repeat = ",
              Rx, " * ", repeat, ", got ", rows);
  TORCH_CHECK(rows == 0 || (M > 0 && rows % M == 0), "losses must have M entries with M dividing rows = ", rows,
              ", got ", M);
  return {Rx, k, sigma.numel(), M, rows, repeat, (rows == 0 || Rx == 0) ? 0 : rows / (Rx * repeat), bits};
}

struct LIFShape {
  int64_t S, B, F;
};

// lif_noise: pre [S, B, F] floating (S = 1 or T), sigma [F / inner] in the math type.
inline LIFShape lif_check(const at::Tensor& pre, const at::Tensor& sigma, int64_t T, int64_t C, int64_t inner) {
  TORCH_CHECK(pre.dim() == 3 && at::isFloatingType(pre.scalar_type()), "pre must be a floating [S, B, F] tensor, got ",
              pre.scalar_type(), " ", pre.sizes());
  TORCH_CHECK(T >= 1 && C >= 1 && inner >= 1, "steps, replicas and inner must be >= 1, got ", T, ", ", C, ", ", inner);
  TORCH_CHECK(pre.size(0) == 1 || pre.size(0) == T, "pre must have 1 or steps = ", T, " time steps, got ", pre.size(0));
  TORCH_CHECK(sigma.dim() == 1 && sigma.scalar_type() == lr_math_type(pre) && sigma.device() == pre.device(),
              "sigma must be a 1-D ", lr_math_type(pre), " tensor on ", pre.device());
  TORCH_CHECK(sigma.numel() * inner == pre.size(2), "pre must have sigma.numel() * inner = ", sigma.numel() * inner,
              " features, got ", pre.size(2));
  return {pre.size(0), pre.size(1), pre.size(2)};
}

}  // namespace fastnoise
