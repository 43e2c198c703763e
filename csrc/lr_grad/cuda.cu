// CUDA kernel of the likelihood-ratio gradient estimator (math and row layout: fastnoise/ops/lr_grad.py).
//
// One block computes a TN x TK tile of G_weight (neurons x inputs) and loops over the input rows in
// chunks of TQ: its threads regenerate the noise of the tile's neurons (normal_at of csrc/philox.h, the
// normals of the forward's noise_add kernel, bit for bit), reduce it over the noise rows sharing each
// input row into E [TQ, TN] (shared memory), load the X tile (bits unpacked, sgn for NIT-S) and
// accumulate E^T X in registers (4 neurons x 2 inputs per thread). The blocks of the first input tile
// also sum G_bias and G_sigma (per thread, then over the thread rows in a fixed order): deterministic.
// Seed and offset are read from device memory (CUDA-graph safe). lif_noise (the noisy LIF forward): one
// thread per (row, feature) runs the T steps of Eq. 7 on the normals of noise_add's layout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/dtype_cuda.cuh"
#include "cuda_common.cuh"
#include "lr_grad/launch.h"
#include "noise/noise_math.h"
#include "philox.h"

namespace fastnoise {
namespace {

constexpr int TN = 32, TK = 64, TQ = 32;  // block (32, 8): 4 neurons x 2 inputs per thread

template <typename A> __device__ __forceinline__ A to_math(float v) { return static_cast<A>(v); }
template <typename A> __device__ __forceinline__ A to_math(double v) { return static_cast<A>(v); }
template <typename A> __device__ __forceinline__ A to_math(__half v) { return static_cast<A>(__half2float(v)); }
template <typename A> __device__ __forceinline__ A to_math(__nv_bfloat16 v) {
  return static_cast<A>(__bfloat162float(v));
}

template <typename S>
struct FloatRows {
  const S* p;
  int64_t K;
  template <typename A>
  __device__ __forceinline__ A load(int64_t q, int64_t k, bool sign) const {
    const A v = to_math<A>(p[q * K + k]);
    return sign ? (v > A(0) ? A(1) : (v < A(0) ? A(-1) : A(0))) : v;
  }
};

struct BitRows {
  const uint32_t* p;
  int64_t W;
  template <typename A>
  __device__ __forceinline__ A load(int64_t q, int64_t k, bool) const {
    return static_cast<A>((p[q * W + (k >> 5)] >> (k & 31)) & 1u);
  }
};

template <typename A, typename XR>
__global__ void __launch_bounds__(256) lr_grad_kernel(XR xr, const A* __restrict__ L, const A* __restrict__ sigma,
                                                      const int64_t* __restrict__ state, int64_t Rx, int64_t K,
                                                      int64_t N, int64_t M, int64_t J, int64_t repeat, bool sign,
                                                      A* __restrict__ gw, A* __restrict__ gb, A* __restrict__ gs) {
  __shared__ A Es[TQ][TN + 1];
  __shared__ A Xs[TQ][TK + 1];
  __shared__ A red_b[8][TN];
  __shared__ A red_s[8][TN];
  const uint64_t seed = static_cast<uint64_t>(state[0]), offset = static_cast<uint64_t>(state[1]);
  const int tx = threadIdx.x, ty = threadIdx.y, t = ty * 32 + tx;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * TK, n0 = static_cast<int64_t>(blockIdx.y) * TN;
  const int64_t ne = n0 + tx;  // the neuron of this thread's E entries (rows ty, ty + 8, ...)
  const bool stats = blockIdx.x == 0;
  A acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = A(0);
  A ab = A(0), as = A(0);
  for (int64_t q0 = 0; q0 < Rx; q0 += TQ) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qq = ty + 8 * i;
      const int64_t q = q0 + qq;
      A e = A(0);
      if (q < Rx && ne < N) {
        for (int64_t j = 0; j < J; ++j) {
          for (int64_t c = 0; c < repeat; ++c) {
            const int64_t r = (j * Rx + q) * repeat + c;
            const A v = static_cast<A>(normal_at(seed, offset + static_cast<uint64_t>(r * N + ne)));
            const A w = L[r % M];
            const A f = sign ? (v >= A(0) ? w : -w) : w * v;
            e += f;
            if (stats) {
              ab += f;
              as += w * (v * v - A(1));
            }
          }
        }
      }
      Es[qq][tx] = e;
    }
#pragma unroll
    for (int i = 0; i < (TQ * TK) / 256; ++i) {
      const int idx = t + 256 * i, qq = idx / TK, kk = idx % TK;
      const int64_t q = q0 + qq, k = k0 + kk;
      Xs[qq][kk] = (q < Rx && k < K) ? xr.template load<A>(q, k, sign) : A(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int qq = 0; qq < TQ; ++qq) {
      const A x0 = Xs[qq][tx], x1 = Xs[qq][tx + 32];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const A e = Es[qq][ty * 4 + i];
        acc[i][0] += e * x0;
        acc[i][1] += e * x1;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t n = n0 + ty * 4 + i;
    if (n >= N) continue;
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int64_t k = k0 + tx + 32 * c;
      if (k < K) gw[n * K + k] = sign ? acc[i][c] : acc[i][c] / sigma[n];
    }
  }
  if (stats) {
    red_b[ty][tx] = ab;
    red_s[ty][tx] = as;
    __syncthreads();
    if (ty == 0 && ne < N) {
      A b = A(0), s = A(0);
#pragma unroll
      for (int y = 0; y < 8; ++y) {
        b += red_b[y][tx];
        s += red_s[y][tx];
      }
      gb[ne] = sign ? b : b / sigma[ne];
      gs[ne] = s / sigma[ne];
    }
  }
}

template <typename A, typename XR>
cudaError_t launch(XR xr, const void* losses, const void* sigma, const int64_t* state, int64_t Rx, int64_t K,
                   int64_t N, int64_t M, int64_t J, int64_t repeat, bool sign, void* gw, void* gb, void* gs,
                   cudaStream_t stream) {
  const int64_t kb = K > 0 ? (K + TK - 1) / TK : 1, nb = (N + TN - 1) / TN;
  if (nb > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(kb), static_cast<unsigned>(nb)), block(32, 8);
  lr_grad_kernel<A, XR><<<grid, block, 0, stream>>>(xr, static_cast<const A*>(losses), static_cast<const A*>(sigma),
                                                     state, Rx, K, N, M, J, repeat, sign, static_cast<A*>(gw),
                                                     static_cast<A*>(gb), static_cast<A*>(gs));
  return cudaGetLastError();
}

// ---- lif_noise: one thread per (row, feature), looping over the T steps (Eq. 7, noise_add's layout) ----

template <typename S> __device__ __forceinline__ S from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_float<double>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename S, typename A>
__global__ void lif_noise_kernel(const S* __restrict__ pre, const A* __restrict__ sigma, const int64_t* __restrict__ state,
                                 S* __restrict__ out, int64_t Sx, int64_t B, int64_t F, int64_t T, int64_t C,
                                 int64_t inner, A decay, A th) {
  const uint64_t seed = static_cast<uint64_t>(state[0]), offset = static_cast<uint64_t>(state[1]);
  const int64_t R = B * C, n = R * F;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / F, j = i % F, b = row / C;
    const A sg = sigma[j / inner];
    A u = A(0), keep = decay;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t g = (t * R + row) * F + j;
      const A p = to_math<A>(pre[((Sx > 1 ? t : 0) * B + b) * F + j]);
      const A v = noise_forward_elem<kNoiseAdd, A>(p, sg, A(0), static_cast<A>(normal_at(seed, offset + static_cast<uint64_t>(g))));
      u = u * keep + v;
      const bool spk = u > th;
      keep = spk ? A(0) : decay;
      out[g] = from_float<S>(spk ? 1.0f : 0.0f);
    }
  }
}

template <typename S, typename A>
cudaError_t launch_lif(const void* pre, const void* sigma, const int64_t* state, void* out, int64_t Sx, int64_t B,
                       int64_t F, int64_t T, int64_t C, int64_t inner, double decay, double th, cudaStream_t stream) {
  const int64_t n = B * C * F;
  if (n == 0) return cudaSuccess;
  lif_noise_kernel<S, A><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const S*>(pre), static_cast<const A*>(sigma),
                                                               state, static_cast<S*>(out), Sx, B, F, T, C, inner,
                                                               static_cast<A>(decay), static_cast<A>(th));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_lif_noise(int dtype, const void* pre, const void* sigma, const int64_t* state, void* out, int64_t S,
                             int64_t B, int64_t F, int64_t T, int64_t C, int64_t inner, double decay, double threshold,
                             cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using D = typename decltype(tag)::type;
    using A = typename decltype(tag)::math;
    return launch_lif<D, A>(pre, sigma, state, out, S, B, F, T, C, inner, decay, threshold, stream);
  });
}

cudaError_t launch_lr_grad(int xkind, const void* x, const void* losses, const void* sigma, const int64_t* state,
                           int64_t Rx, int64_t K, int64_t N, int64_t M, int64_t J, int64_t repeat, bool sign,
                           void* gw, void* gb, void* gs, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  switch (xkind) {
    case kDtypeF32:
      return launch<float>(FloatRows<float>{static_cast<const float*>(x), K}, losses, sigma, state, Rx, K, N, M, J,
                           repeat, sign, gw, gb, gs, stream);
    case kDtypeF16:
      return launch<float>(FloatRows<__half>{static_cast<const __half*>(x), K}, losses, sigma, state, Rx, K, N, M, J,
                           repeat, sign, gw, gb, gs, stream);
    case kDtypeBF16:
      return launch<float>(FloatRows<__nv_bfloat16>{static_cast<const __nv_bfloat16*>(x), K}, losses, sigma, state,
                           Rx, K, N, M, J, repeat, sign, gw, gb, gs, stream);
    case kDtypeF64:
      return launch<double>(FloatRows<double>{static_cast<const double*>(x), K}, losses, sigma, state, Rx, K, N, M,
                            J, repeat, sign, gw, gb, gs, stream);
    case kLRBits:
      return launch<float>(BitRows{static_cast<const uint32_t*>(x), (K + 31) / 32}, losses, sigma, state, Rx, K, N,
                           M, J, repeat, sign, gw, gb, gs, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace fastnoise
