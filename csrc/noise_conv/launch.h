// Host-callable launcher of the CUDA noise-conv kernel (plain CUDA types; see cuda.cu and config.h).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/conv_geom.h"
#include "common/dtype.h"

namespace fastnoise {

// dtype of x / weight / bias / out: a code of common/dtype.h (the math type A is double for float64, float
// otherwise).
// how the fused kernel applies the input noise on the x tile loads / the output noise in the epilogue
enum NcFusedIn : int { kNcFusedInNone = 0, kNcFusedInFactorMul = 1, kNcFusedInFactorAdd = 2, kNcFusedInMul = 3,
                       kNcFusedInAdd = 4 };
enum NcFusedOut : int { kNcFusedOutNone = 0, kNcFusedOutFactor = 1, kNcFusedOutAdd = 2 };

// Device pointers of one call. x is read through its strides (elements); weight is the noisy W',
// contiguous [N, Kg]; out is contiguous [B, N, Ho, Wo]. Parameters / factors are in the math type A.
//   input  factor modes: fin[C*H*W] (x * fin or x + fin, the batch-shared draw prepared by the glue);
//          per-sample modes: x * (pa[(j / inner_a) % Pa] + pb[(j / inner_b) % Pb] * delta) or
//          x + pb[...] * delta, delta = normal(offset + base_in + b*C*H*W + j), j the index in the sample
//          (pb already includes the amplitude s);
//   output factor mode: + fout[n*Ho*Wo + l]; add mode: + po[(jo / inner_o) % Po] * normal(offset + base_out
//          + b*N*Ho*Wo + jo), jo = n*Ho*Wo + l.
struct NoiseConvArgs {
  const void* x;
  const void* weight;
  const void* bias;  // [N] or nullptr
  void* out;
  int64_t sxb, sxc, sxh, sxw;
  int in_mode;
  const void* fin;
  const void* pa;
  int64_t Pa, inner_a;
  const void* pb;
  int64_t Pb, inner_b;
  int out_mode;
  const void* fout;
  const void* po;
  int64_t Po, inner_o;
  const int64_t* state;  // device int64[2] = (seed, offset)
  int64_t base_in, base_out;
};

constexpr int64_t kNcMaxColumnBlocks = 65535;
constexpr int kNcBlockN = 64;

// out = conv(x', W') + bias (+ output noise) with geometry g. Returns cudaErrorInvalidValue for a bad
// dtype / mode or a grid over the limits.
cudaError_t launch_noise_conv(const ConvGeom& g, const NoiseConvArgs& a, int dtype, cudaStream_t stream);

}  // namespace fastnoise
