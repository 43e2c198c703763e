// CUDA kernel: the raw / uniform / normal Philox stream. Each thread makes one Philox block
// (4 consecutive elements); seed and offset are read from device memory, so launches are
// CUDA-graph safe.
#include "cuda_common.cuh"
#include "philox.h"
#include "rng/launch.h"

namespace fastnoise {
namespace {

template <int KIND, typename T>
__global__ void philox_kernel(T* __restrict__ out, const int64_t* __restrict__ state, int64_t count) {
  const uint64_t seed = static_cast<uint64_t>(state[0]);
  const uint64_t offset = static_cast<uint64_t>(state[1]);
  const uint64_t c_first = offset >> 2;
  const uint64_t n_blocks = ((offset + count + 3) >> 2) - c_first;
  for (uint64_t t = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; t < n_blocks;
       t += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t c = c_first + t;
    const U32x4 w = philox_block(seed, c);
    T v[4];
    if (KIND == 0) {
      v[0] = w.x; v[1] = w.y; v[2] = w.z; v[3] = w.w;
    } else if (KIND == 1) {
      v[0] = uniform_from_bits(w.x); v[1] = uniform_from_bits(w.y);
      v[2] = uniform_from_bits(w.z); v[3] = uniform_from_bits(w.w);
    } else {
      float f[4];
      normal_block(w, f);
      for (int j = 0; j < 4; ++j) v[j] = static_cast<T>(f[j]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = static_cast<int64_t>(4 * c + j - offset);
      if (i >= 0 && i < count) out[i] = v[j];
    }
  }
}

}  // namespace

cudaError_t launch_philox(void* out, const int64_t* state, int64_t count, int kind, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned grid = grid_for(count / 4 + 2, threads);
  if (kind == 0) {
    philox_kernel<0, int64_t><<<grid, threads, 0, stream>>>(static_cast<int64_t*>(out), state, count);
  } else if (kind == 1) {
    philox_kernel<1, float><<<grid, threads, 0, stream>>>(static_cast<float*>(out), state, count);
  } else {
    philox_kernel<2, float><<<grid, threads, 0, stream>>>(static_cast<float*>(out), state, count);
  }
  return cudaGetLastError();
}

}  // namespace fastnoise
