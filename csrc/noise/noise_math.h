// Per-element math of the noise ops, shared by the CPU and CUDA kernels (plain C++, no torch).
//
//   op 0 add:  y = x + a * d                         a = sigma
//   op 1 mul:  y = x * (a + b * d)                   a = mu, b = sigma   (CTRW, seed 001 Eq. 4)
//   op 2 sal:  y = x + d * exp((x * a + b) / 2)      a = w,  b = b       (SAL, seed 003 Eqs. 2-3)
// d is the Philox normal of the element (csrc/philox.h); A is the math type (float, or double for
// float64 data; on the CPU also a native float vector, nat::f32: the same operations lane by lane). The
// backward gives grad_x and the per-element terms of grad_a and grad_b.
#pragma once
#include <math.h>

#include "common/param_layout.h"  // ParamIter (used with these by the kernels)
#include "philox.h"
#if !defined(__CUDACC__)
#include "fastmath.h"
#endif

namespace fastnoise {

enum NoiseOp : int { kNoiseAdd = 0, kNoiseMul = 1, kNoiseSal = 2 };
// bits of `need` in the backward kernels
enum NoiseNeed : int { kNeedX = 1, kNeedA = 2, kNeedB = 4 };

#if defined(__CUDACC__)
FN_HD float noise_exp(float v) { return expf(v); }
#else
inline float noise_exp(float v) { return fastmath::exp_fast(v); }
FN_VINLINE nat::f32 noise_exp(nat::f32 v) { return fastmath::exp_t(v); }  // the same bits lane by lane
#endif
FN_HD double noise_exp(double v) { return exp(v); }

template <int OP, typename A>
FN_HD A noise_forward_elem(A x, A a, A b, A d) {
  if (OP == kNoiseAdd) return x + a * d;
  if (OP == kNoiseMul) return x * (a + b * d);
  return x + d * noise_exp((x * a + b) * 0.5f);
}

template <int OP, typename A>
FN_HD void noise_backward_elem(A g, A x, A a, A b, A d, A* gx, A* ga, A* gb) {
  if (OP == kNoiseAdd) {
    *gx = g;
    *ga = g * d;
    *gb = A();
  } else if (OP == kNoiseMul) {
    *gx = g * (a + b * d);
    *ga = g * x;
    *gb = g * x * d;
  } else {
    const A hde = 0.5f * g * d * noise_exp((x * a + b) * 0.5f);  // g * dy/db
    *gx = g + hde * a;
    *ga = hde * x;
    *gb = hde;
  }
}

}  // namespace fastnoise
