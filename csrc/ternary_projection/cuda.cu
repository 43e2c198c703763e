// CUDA kernels of the sparse ternary projection (layout and generation rule: ternary.h).
// One thread per output element (grid-stride loops, int64 indices); the +1 / -1 bitmasks are walked
// with __ffs, so each output is a signed sum of the selected inputs and one multiplication by `scale`.
#include "cuda_common.cuh"
#include "ternary_projection/launch.h"
#include "ternary_projection/ternary.h"

namespace fastnoise {
namespace {

constexpr int kThreads = 256;

__global__ void generate_kernel(uint32_t* __restrict__ out, const int64_t* __restrict__ state, int64_t k,
                                int64_t d) {
  const uint64_t seed = static_cast<uint64_t>(state[0]);
  const uint64_t offset = static_cast<uint64_t>(state[1]);
  const int64_t W = ternary_words(d);
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < k * W; t += (int64_t)gridDim.x * blockDim.x) {
    uint32_t plus, minus;
    ternary_word(seed, offset, t / W, t % W, d, &plus, &minus);
    out[t] = plus;
    out[k * W + t] = minus;
  }
}

// Signed sum over the set bits of (plus, minus) of one 32-entry word: f(bit) gives the input value.
template <typename T, typename F>
__device__ __forceinline__ T word_sum(uint32_t plus, uint32_t minus, F f) {
  T acc = T(0);
  while (plus) {
    const int b = __ffs(plus) - 1;
    acc += f(b);
    plus &= plus - 1u;
  }
  while (minus) {
    const int b = __ffs(minus) - 1;
    acc -= f(b);
    minus &= minus - 1u;
  }
  return acc;
}

template <typename T>
__global__ void project_kernel(const T* __restrict__ x, const uint32_t* __restrict__ P, T* __restrict__ y, int64_t N,
                               int64_t d, int64_t k, T scale) {
  const int64_t W = ternary_words(d);
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < N * k; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = t / k, p = t % k;
    const T* xr = x + row * d;
    T acc = T(0);
    for (int64_t w = 0; w < W; ++w) {
      const T* xw = xr + 32 * w;
      acc += word_sum<T>(P[p * W + w], P[(k + p) * W + w], [&](int b) { return xw[b]; });
    }
    y[t] = acc * scale;
  }
}

template <typename T>
__global__ void project_t_kernel(const T* __restrict__ g, const uint32_t* __restrict__ P, T* __restrict__ out,
                                 int64_t N, int64_t d, int64_t k, T scale) {
  const int64_t W = ternary_words(d);
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < N * d; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = t / d, q = t % d;
    const unsigned b = static_cast<unsigned>(q & 31);
    const int64_t w = q >> 5;
    const T* gr = g + row * k;
    T acc = T(0);
    for (int64_t p = 0; p < k; ++p) {
      if ((P[p * W + w] >> b) & 1u) acc += gr[p];
      if ((P[(k + p) * W + w] >> b) & 1u) acc -= gr[p];
    }
    out[t] = acc * scale;
  }
}

template <typename T>
__global__ void conv_project_kernel(const T* __restrict__ x, const uint32_t* __restrict__ P, T* __restrict__ y,
                                    TernaryConvShape s, T scale) {
  const int64_t cg = s.C / s.groups, kk = s.kh * s.kw, d = cg * kk, W = ternary_words(d);
  const int64_t L = s.Ho * s.Wo;
  const int64_t total = s.B * s.groups * s.k * L;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t l = t % L;
    const int64_t p = (t / L) % s.k;
    const int64_t bg = t / (L * s.k);  // b * groups + g
    const int64_t oh = l / s.Wo, ow = l % s.Wo;
    const T* xb = x + bg * cg * s.H * s.W;  // channel g*cg of image b
    T acc = T(0);
    for (int64_t w = 0; w < W; ++w) {
      acc += word_sum<T>(P[p * W + w], P[(s.k + p) * W + w], [&](int b) -> T {
        const int64_t q = 32 * w + b;
        const int64_t c = q / kk, ij = q % kk;
        const int64_t ih = oh * s.sh - s.ph + (ij / s.kw) * s.dh;
        const int64_t iw = ow * s.sw - s.pw + (ij % s.kw) * s.dw;
        return (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ? xb[(c * s.H + ih) * s.W + iw] : T(0);
      });
    }
    y[t] = acc * scale;
  }
}

}  // namespace

cudaError_t launch_ternary_generate(int32_t* out, const int64_t* state, int64_t k, int64_t d, cudaStream_t stream) {
  const int64_t n = k * ternary_words(d);
  if (n == 0) return cudaSuccess;
  generate_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(reinterpret_cast<uint32_t*>(out), state, k, d);
  return cudaGetLastError();
}

cudaError_t launch_ternary_project(const void* x, const int32_t* packed, void* y, int64_t N, int64_t d, int64_t k,
                                   double scale, bool is_double, cudaStream_t stream) {
  if (N * k == 0) return cudaSuccess;
  const unsigned grid = grid_for(N * k, kThreads);
  const uint32_t* P = reinterpret_cast<const uint32_t*>(packed);
  if (is_double) {
    project_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<const double*>(x), P, static_cast<double*>(y),
                                                           N, d, k, scale);
  } else {
    project_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), P, static_cast<float*>(y), N,
                                                          d, k, static_cast<float>(scale));
  }
  return cudaGetLastError();
}

cudaError_t launch_ternary_project_t(const void* g, const int32_t* packed, void* out, int64_t N, int64_t d,
                                     int64_t k, double scale, bool is_double, cudaStream_t stream) {
  if (N * d == 0) return cudaSuccess;
  const unsigned grid = grid_for(N * d, kThreads);
  const uint32_t* P = reinterpret_cast<const uint32_t*>(packed);
  if (is_double) {
    project_t_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<const double*>(g), P,
                                                             static_cast<double*>(out), N, d, k, scale);
  } else {
    project_t_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(g), P, static_cast<float*>(out),
                                                            N, d, k, static_cast<float>(scale));
  }
  return cudaGetLastError();
}

cudaError_t launch_ternary_conv_project(const void* x, const int32_t* packed, void* y, const TernaryConvShape& s,
                                        double scale, bool is_double, cudaStream_t stream) {
  const int64_t total = s.B * s.groups * s.k * s.Ho * s.Wo;
  if (total == 0) return cudaSuccess;
  const unsigned grid = grid_for(total, kThreads);
  const uint32_t* P = reinterpret_cast<const uint32_t*>(packed);
  if (is_double) {
    conv_project_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<const double*>(x), P,
                                                                static_cast<double*>(y), s, scale);
  } else {
    conv_project_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), P, static_cast<float*>(y),
                                                               s, static_cast<float>(scale));
  }
  return cudaGetLastError();
}

}  // namespace fastnoise
