// Argument checks of the lr_grad kernels, shared by the CPU kernel and the CUDA glue (torch headers).
// Layout and math: fastnoise/ops/lr_grad.py. x is a floating [Rx, K] matrix or packed bits int32
// [Rx, ceil(K / 32)]; losses [M] and sigma [N] in the math type (float64 for float64 x, else float32).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace fastnoise {

struct LRShape {
  int64_t Rx, K, N, M, rows, repeat, J;  // J = rows / (Rx * repeat): passes over the input rows
  bool bits;
};

inline at::ScalarType lr_math_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

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

}  // namespace fastnoise
