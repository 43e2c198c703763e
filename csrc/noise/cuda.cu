// CUDA kernels of the noise ops: each thread makes one Philox block (4 consecutive stream elements,
// csrc/philox.h) in a grid-stride loop and applies the per-element math of noise_math.h to the elements
// of the call it covers. The backward regenerates the same normals. Seed and offset are read from
// device memory, so launches are CUDA-graph safe.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/dtype_cuda.cuh"
#include "cuda_common.cuh"
#include "noise/launch.h"
#include "noise/noise_math.h"
#include "philox.h"

namespace fastnoise {
namespace {

template <typename T> struct Cvt;
template <> struct Cvt<float> {
  using A = float;
  __device__ static float load(float v) { return v; }
  __device__ static float store(float v) { return v; }
};
template <> struct Cvt<double> {
  using A = double;
  __device__ static double load(double v) { return v; }
  __device__ static double store(double v) { return v; }
};
template <> struct Cvt<__half> {
  using A = float;
  __device__ static float load(__half v) { return __half2float(v); }
  __device__ static __half store(float v) { return __float2half_rn(v); }
};
template <> struct Cvt<__nv_bfloat16> {
  using A = float;
  __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

// Calls body(i, delta_i) for every element i of the call, one Philox block per thread per iteration.
template <typename Body>
__device__ __forceinline__ void for_each_block(const int64_t* state, int64_t n, Body body) {
  const uint64_t seed = static_cast<uint64_t>(state[0]);
  const uint64_t offset = static_cast<uint64_t>(state[1]);
  const uint64_t c_first = offset >> 2;
  const uint64_t n_blocks = ((offset + static_cast<uint64_t>(n) + 3) >> 2) - c_first;
  for (uint64_t t = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; t < n_blocks;
       t += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t c = c_first + t;
    float d[4];
    normal_block(philox_block(seed, c), d);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = static_cast<int64_t>(4 * c + j - offset);
      if (i >= 0 && i < n) body(i, d[j]);
    }
  }
}

template <typename T, int OP>
__global__ void noise_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, NoiseParamPtr a,
                                     NoiseParamPtr b, const int64_t* __restrict__ state) {
  using A = typename Cvt<T>::A;
  const A* pa = static_cast<const A*>(a.p);
  const A* pb = static_cast<const A*>(b.p);
  for_each_block(state, n, [&](int64_t i, float d) {
    const A v = noise_forward_elem<OP, A>(Cvt<T>::load(x[i]), param_at(pa, a.P, a.inner, i),
                                          param_at(pb, b.P, b.inner, i), static_cast<A>(d));
    y[i] = Cvt<T>::store(v);
  });
}

template <typename T, int OP>
__global__ void noise_backward_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ gx,
                                      typename Cvt<T>::A* __restrict__ ga, typename Cvt<T>::A* __restrict__ gb,
                                      int64_t n, NoiseParamPtr a, NoiseParamPtr b, const int64_t* __restrict__ state) {
  using A = typename Cvt<T>::A;
  const A* pa = static_cast<const A*>(a.p);
  const A* pb = static_cast<const A*>(b.p);
  for_each_block(state, n, [&](int64_t i, float d) {
    A vx, va, vb;
    const A xv = OP == kNoiseAdd ? A(0) : Cvt<T>::load(x[i]);
    noise_backward_elem<OP, A>(Cvt<T>::load(g[i]), xv, param_at(pa, a.P, a.inner, i), param_at(pb, b.P, b.inner, i),
                               static_cast<A>(d), &vx, &va, &vb);
    if (gx) gx[i] = Cvt<T>::store(vx);
    if (ga) ga[i] = va;
    if (gb) gb[i] = vb;
  });
}

constexpr int kThreads = 256;

template <typename T, int OP>
cudaError_t forward_t(const void* x, void* y, int64_t n, NoiseParamPtr a, NoiseParamPtr b, const int64_t* state,
                      cudaStream_t stream) {
  noise_forward_kernel<T, OP><<<grid_for(n / 4 + 2, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(y), n, a, b, state);
  return cudaGetLastError();
}

template <typename T, int OP>
cudaError_t backward_t(const void* g, const void* x, void* gx, void* ga, void* gb, int64_t n, NoiseParamPtr a,
                       NoiseParamPtr b, const int64_t* state, cudaStream_t stream) {
  using A = typename Cvt<T>::A;
  noise_backward_kernel<T, OP><<<grid_for(n / 4 + 2, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(g), static_cast<const T*>(x), static_cast<T*>(gx), static_cast<A*>(ga),
      static_cast<A*>(gb), n, a, b, state);
  return cudaGetLastError();
}

template <int OP>
cudaError_t forward_op(int dtype, const void* x, void* y, int64_t n, NoiseParamPtr a, NoiseParamPtr b,
                       const int64_t* state, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    return forward_t<typename decltype(tag)::type, OP>(x, y, n, a, b, state, stream);
  });
}

template <int OP>
cudaError_t backward_op(int dtype, const void* g, const void* x, void* gx, void* ga, void* gb, int64_t n,
                        NoiseParamPtr a, NoiseParamPtr b, const int64_t* state, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    return backward_t<typename decltype(tag)::type, OP>(g, x, gx, ga, gb, n, a, b, state, stream);
  });
}

}  // namespace

cudaError_t launch_noise_forward(int dtype, int op, const void* x, void* y, int64_t n, NoiseParamPtr a,
                                 NoiseParamPtr b, const int64_t* state, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (a.P < 1 || a.inner < 1 || b.P < 1 || b.inner < 1) return cudaErrorInvalidValue;
  switch (op) {
    case kNoiseAdd: return forward_op<kNoiseAdd>(dtype, x, y, n, a, b, state, stream);
    case kNoiseMul: return forward_op<kNoiseMul>(dtype, x, y, n, a, b, state, stream);
    case kNoiseSal: return forward_op<kNoiseSal>(dtype, x, y, n, a, b, state, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_noise_backward(int dtype, int op, const void* grad, const void* x, void* grad_x, void* grad_a,
                                  void* grad_b, int64_t n, NoiseParamPtr a, NoiseParamPtr b, const int64_t* state,
                                  cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (a.P < 1 || a.inner < 1 || b.P < 1 || b.inner < 1) return cudaErrorInvalidValue;
  switch (op) {
    case kNoiseAdd: return backward_op<kNoiseAdd>(dtype, grad, x, grad_x, grad_a, grad_b, n, a, b, state, stream);
    case kNoiseMul: return backward_op<kNoiseMul>(dtype, grad, x, grad_x, grad_a, grad_b, n, a, b, state, stream);
    case kNoiseSal: return backward_op<kNoiseSal>(dtype, grad, x, grad_x, grad_a, grad_b, n, a, b, state, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace fastnoise
