// Broadcast parameters in the kernel layout, shared by the CPU and CUDA kernels (plain C++, no torch).
//
// A parameter (sigma, mu, w, b, ...) broadcast to x is passed to a kernel as a contiguous 1-D tensor of P
// values in the math type (float32; float64 for float64 x) plus `inner`: element i (flat, row-major) of x
// uses value p[(i / inner) % P]. fastnoise/ops/_noise.py (`layout`) builds it from any broadcastable shape
// (scalar: P = inner = 1; per channel [C, 1, 1] of NCHW: P = C, inner = H*W; per element: P = numel).
// The torch-side checks are in common/param_layout_aten.h.
#pragma once
#include <stdint.h>

#include "philox.h"  // FN_HD

namespace fastnoise {

// A parameter as the CUDA launchers take it: device pointer to P values of the math type.
struct NoiseParamPtr {
  const void* p;
  int64_t P;
  int64_t inner;
};

// Value of element i of x.
template <typename A>
FN_HD A param_at(const A* p, int64_t P, int64_t inner, int64_t i) {
  return P == 1 ? p[0] : p[(i / inner) % P];
}

// Index of a broadcast parameter: element i of x uses p[(i / inner) % P]. Iterates in O(1) per step.
struct ParamIter {
  int64_t P, inner, p, r;
  FN_HD ParamIter(int64_t begin, int64_t inner_, int64_t P_) : P(P_), inner(inner_) {
    p = (begin / inner) % P;
    r = begin % inner;
  }
  FN_HD void step() {
    if (++r == inner) {
      r = 0;
      if (++p == P) p = 0;
    }
  }
};

}  // namespace fastnoise
