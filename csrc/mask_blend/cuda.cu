// CUDA kernels of mask_blend on raw pointers (plain CUDA headers only).
//
// The tensor is [outer, F, inner]; a row (one (outer, group, inner) index) has `length` features
// `inner` apart (length = F for top-k, = M for N:M). Same rule as the CPU and Triton kernels:
// order-preserving keys (mask_blend/keys.h), the k-th largest key by a bitwise search from the top
// bit, ties at the threshold taken in index order.
//
// * rows of length <= 16 (N:M groups): one thread per row, rank counting;
// * longer rows: one warp per row; the search counts keys >= candidate with a warp reduction (keys
//   cached in registers for rows of <= 512 features, re-read through L1 otherwise); ties use a warp
//   ballot + popc prefix over chunks of 32 consecutive features.
// Grid-stride loops over rows; every launch on the caller's stream and checked by the caller.
// mask_select is the same launch with z = out = nullptr (the mask only).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/dtype_cuda.cuh"
#include "cuda_common.cuh"
#include "mask_blend/keys.h"
#include "mask_blend/launch.h"

namespace fastnoise {
namespace {

constexpr int kSmallRow = 16;   // thread-per-row kernel up to this length
constexpr int kCachedKeys = 16; // keys per lane kept in registers (rows up to 32 * 16 = 512)
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T> __device__ __forceinline__ T zero_of() { return T(0); }
template <> __device__ __forceinline__ __half zero_of<__half>() { return __float2half(0.0f); }
template <> __device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() { return __float2bfloat16(0.0f); }

template <typename T>
__device__ __forceinline__ typename KeyOf<T>::type key_at(const T* __restrict__ za, int64_t idx, bool signed_score) {
  return score_key(to_acc(za[idx]), signed_score);
}

__device__ __forceinline__ uint32_t warp_sum(uint32_t v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}


__device__ __forceinline__ int64_t row_base(int64_t r, int64_t groups, int64_t inner, int64_t length) {
  const int64_t gi = groups * inner;
  const int64_t o = r / gi;
  const int64_t rem = r - o * gi;
  const int64_t g = rem / inner;
  const int64_t i = rem - g * inner;
  return o * gi * length + g * length * inner + i;
}

// One thread per row of length <= kSmallRow: rank of j = #{greater} + #{equal with lower index}.
template <typename T>
__global__ void mask_blend_small_kernel(const T* __restrict__ z, const T* __restrict__ za, T* __restrict__ out,
                                        bool* __restrict__ mask, int64_t n_rows, int64_t groups, int64_t inner,
                                        int length, int64_t k, bool signed_score) {
  using K = typename KeyOf<T>::type;
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < n_rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t base = row_base(r, groups, inner, length);
    K keys[kSmallRow];
#pragma unroll
    for (int j = 0; j < kSmallRow; ++j) keys[j] = j < length ? key_at(za, base + j * inner, signed_score) : K(0);
#pragma unroll
    for (int j = 0; j < kSmallRow; ++j) {
      if (j < length) {
        int64_t rank = 0;
#pragma unroll
        for (int i = 0; i < kSmallRow; ++i) {
          if (i < length) rank += (keys[i] > keys[j]) || (keys[i] == keys[j] && i < j);
        }
        const bool s = rank < k;
        const int64_t idx = base + j * inner;
        if (out != nullptr) out[idx] = s ? z[idx] : za[idx];  // null: mask_select
        mask[idx] = s;
      }
    }
  }
}

// One warp per row. KPL > 0: the row has at most 32 * KPL features, keys cached in registers
// (lane holds features lane + 32 q); KPL == 0: any length, keys re-read from memory.
template <typename T, int KPL>
__global__ void mask_blend_warp_kernel(const T* __restrict__ z, const T* __restrict__ za, T* __restrict__ out,
                                       bool* __restrict__ mask, int64_t n_rows, int64_t groups, int64_t inner,
                                       int64_t length, int64_t k, bool signed_score) {
  using K = typename KeyOf<T>::type;
  constexpr int kBits = 8 * sizeof(K);
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x >> 5;
  const int64_t n_warps = (int64_t)gridDim.x * warps_per_block;
  for (int64_t r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < n_rows; r += n_warps) {  // warp-uniform
    const int64_t base = row_base(r, groups, inner, length);
    K cache[KPL > 0 ? KPL : 1];
    if (KPL > 0) {
#pragma unroll
      for (int q = 0; q < (KPL > 0 ? KPL : 1); ++q) {
        const int64_t j = lane + 32 * q;
        cache[q] = j < length ? key_at(za, base + j * inner, signed_score) : K(0);  // padding 0 never counts
      }
    }
    // thr = the largest key with count(keys >= thr) >= k
    K thr = 0;
    for (int b = kBits - 1; b >= 0; --b) {
      const K cand = thr | (K(1) << b);
      uint32_t c = 0;
      if (KPL > 0) {
#pragma unroll
        for (int q = 0; q < (KPL > 0 ? KPL : 1); ++q) c += cache[q] >= cand;
      } else {
        for (int64_t j = lane; j < length; j += 32) c += key_at(za, base + j * inner, signed_score) >= cand;
      }
      if ((int64_t)warp_sum(c) >= k) thr = cand;
    }
    uint32_t g = 0;
    if (KPL > 0) {
#pragma unroll
      for (int q = 0; q < (KPL > 0 ? KPL : 1); ++q) g += (lane + 32 * q < length) && cache[q] > thr;
    } else {
      for (int64_t j = lane; j < length; j += 32) g += key_at(za, base + j * inner, signed_score) > thr;
    }
    const int64_t take = k - (int64_t)warp_sum(g);  // ties to keep, lowest index first
    int64_t taken = 0;
    const int64_t chunks = (length + 31) / 32;
    for (int64_t c = 0; c < chunks; ++c) {  // warp-uniform
      const int64_t j = c * 32 + lane;
      const bool in = j < length;
      K key = 0;
      if (KPL > 0) {
#pragma unroll
        for (int q = 0; q < (KPL > 0 ? KPL : 1); ++q) key = (q == c) ? cache[q] : key;
      } else if (in) {
        key = key_at(za, base + j * inner, signed_score);
      }
      const bool e = in && key == thr;
      const unsigned ballot = __ballot_sync(kFullMask, e);
      const int64_t before = __popc(ballot & ((1u << lane) - 1u));
      const bool s = in && (key > thr || (e && taken + before < take));
      if (in) {
        const int64_t idx = base + j * inner;
        if (out != nullptr) out[idx] = s ? z[idx] : za[idx];  // null: mask_select
        mask[idx] = s;
      }
      taken += __popc(ballot);
    }
  }
}

template <typename T>
__global__ void mask_blend_backward_kernel(const T* __restrict__ grad, const bool* __restrict__ mask,
                                           T* __restrict__ gz, T* __restrict__ gza, int64_t count) {
  const T zero = zero_of<T>();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    const T g = grad[i];
    const bool s = mask[i];
    gz[i] = s ? g : zero;
    gza[i] = s ? zero : g;
  }
}

template <typename T>
cudaError_t launch_typed(const void* z, const void* za, void* out, bool* mask, int64_t outer, int64_t feats,
                         int64_t inner, int64_t length, int64_t k, bool signed_score, cudaStream_t stream) {
  const T* zp = static_cast<const T*>(z);
  const T* ap = static_cast<const T*>(za);
  T* op = static_cast<T*>(out);
  const int64_t groups = feats / length;
  const int64_t n_rows = outer * groups * inner;
  if (length <= kSmallRow) {
    const int threads = 256;
    mask_blend_small_kernel<T><<<grid_for(n_rows, threads), threads, 0, stream>>>(
        zp, ap, op, mask, n_rows, groups, inner, static_cast<int>(length), k, signed_score);
    return cudaGetLastError();
  }
  const int threads = 256;
  const int warps = threads / 32;
  const unsigned grid = grid_for(n_rows, warps);
  if (length <= 32 * 4) {
    mask_blend_warp_kernel<T, 4><<<grid, threads, 0, stream>>>(zp, ap, op, mask, n_rows, groups, inner, length, k,
                                                               signed_score);
  } else if (length <= 32 * kCachedKeys) {
    mask_blend_warp_kernel<T, kCachedKeys><<<grid, threads, 0, stream>>>(zp, ap, op, mask, n_rows, groups, inner,
                                                                         length, k, signed_score);
  } else {
    mask_blend_warp_kernel<T, 0><<<grid, threads, 0, stream>>>(zp, ap, op, mask, n_rows, groups, inner, length, k,
                                                               signed_score);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_mask_blend(const void* z, const void* za, void* out, bool* mask, int dtype, int64_t outer,
                              int64_t feats, int64_t inner, int64_t length, int64_t k, bool signed_score,
                              cudaStream_t stream) {
  if (outer == 0 || feats == 0 || inner == 0) return cudaSuccess;
  if (length <= 0 || feats % length != 0) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    return launch_typed<typename decltype(tag)::type>(z, za, out, mask, outer, feats, inner, length, k, signed_score,
                                                      stream);
  });
}

cudaError_t launch_mask_blend_backward(const void* grad, const bool* mask, void* gz, void* gza, int dtype,
                                       int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned grid = grid_for(count, threads);
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    mask_blend_backward_kernel<T><<<grid, threads, 0, stream>>>(static_cast<const T*>(grad), mask,
                                                                static_cast<T*>(gz), static_cast<T*>(gza), count);
    return cudaGetLastError();
  });
}

}  // namespace fastnoise
