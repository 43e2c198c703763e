// CUDA kernel of the sampled exact products (NENNI) on raw pointers (plain CUDA headers only).
//
// One implicit-im2col GEMM serves sampled_linear, sampled_conv2d and channel_conv2d (same scheme as
// the Triton kernel, triton_kernels/sampled.py): rows are output positions (b, oh, ow), columns the
// output channels of one group, the reduction runs over k = (c, ki, kj), Kg = C/groups * kh * kw:
//
//   out[b, n, oh, ow] = sum_k x[b, g*Cg + c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw] * W[n, k] + bias[n]
//
// where selected, 0 elsewhere. A block of 256 threads owns a 64 x 64 output tile (4 x 4 per thread,
// rows tx + 16 i, columns ty + 16 j: conflict-free shared-memory reads, coalesced stores along the
// positions) and walks K in chunks of 16 through shared memory (patches gathered on the fly, zeros in
// the padding). The tile's selection is computed first; a tile with nothing selected writes zeros and
// exits before any reduction (position granularity: the mask tile; channel granularity: columns are
// the kept-first permutation of the channels, so every tile past the kept count exits).
// Accumulation in float (double for double inputs); half / bfloat16 results are rounded once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/conv_tile_cuda.cuh"
#include "common/dtype_cuda.cuh"
#include "cuda_common.cuh"
#include "sampled/launch.h"

namespace fastnoise {
namespace {

using conv_tile::BK;   // reduction chunk
using conv_tile::BM;   // rows (output positions) per tile
using conv_tile::RT;
using conv_tile::TPB;  // threads per block: 16 x 16, each 4 x 4 outputs
constexpr int BN = kSampledBlockN;  // columns (output channels) per tile
constexpr int CT = BN / 16;

template <typename T, typename A>
__global__ void __launch_bounds__(TPB) sampled_product_kernel(const ConvGeom g, const SampledArgs a,
                                                              const int64_t n_tiles_n, const int64_t l_tiles) {
  const T* __restrict__ x = static_cast<const T*>(a.x);
  const T* __restrict__ w = static_cast<const T*>(a.weight);
  const T* __restrict__ bias = static_cast<const T*>(a.bias);
  T* __restrict__ out = static_cast<T*>(a.out);
  const bool channel = a.perm != nullptr;

  __shared__ A As[BK][BM];
  __shared__ A Bs[BK][BN + 1];  // +1: the k-fastest stores hit distinct banks
  __shared__ int64_t s_xrow[BM];  // x offset of (b, first channel of the group), -1: row out of range
  __shared__ int64_t s_orow[BM];  // b * N * L + l: output / mask offset of the row (channel n adds n * L)
  __shared__ int s_ih0[BM], s_iw0[BM];
  __shared__ int64_t s_col[BN];   // output channel of the column, -1: out of range

  const int t = threadIdx.x;
  const int tx = t % 16, ty = t / 16;
  const int64_t grp = blockIdx.y / n_tiles_n;
  const int64_t j0 = (blockIdx.y % n_tiles_n) * BN;
  const int64_t b_tile = channel ? static_cast<int64_t>(blockIdx.x) / l_tiles : 0;  // channel: one sample
  const int64_t n_kept = channel ? a.count[b_tile * g.groups + grp] : 0;

  if (t < BM) {
    int64_t b, l;
    bool ok;
    if (channel) {
      b = b_tile;
      l = (static_cast<int64_t>(blockIdx.x) % l_tiles) * BM + t;
      ok = l < g.L;
    } else {
      const int64_t r = static_cast<int64_t>(blockIdx.x) * BM + t;
      ok = r < g.B * g.L;
      b = r / g.L;
      l = r % g.L;
    }
    const int64_t oh = l / g.Wo, ow = l % g.Wo;
    s_xrow[t] = ok ? b * a.sxb + grp * g.Cg * a.sxc : -1;
    s_orow[t] = b * g.N * g.L + l;
    s_ih0[t] = static_cast<int>(oh * g.sh - g.ph);
    s_iw0[t] = static_cast<int>(ow * g.sw - g.pw);
  } else if (t < BM + BN) {
    const int64_t j = j0 + (t - BM);
    int64_t n = -1;
    if (j < g.Ng) n = grp * g.Ng + (channel ? a.perm[(b_tile * g.groups + grp) * g.Ng + j] : j);
    s_col[t - BM] = n;
  }
  __syncthreads();

  // selection of this thread's outputs (rows tx + 16 i, columns ty + 16 c)
  bool sel[RT][CT];
  bool any = false;
#pragma unroll
  for (int i = 0; i < RT; ++i) {
    const int row = tx + 16 * i;
#pragma unroll
    for (int c = 0; c < CT; ++c) {
      const int col = ty + 16 * c;
      const int64_t n = s_col[col];
      bool s = s_xrow[row] >= 0 && n >= 0;
      if (s) s = channel ? (j0 + col < n_kept) : a.mask[s_orow[row] + n * g.L];
      sel[i][c] = s;
      any |= s;
    }
  }
  A acc[RT][CT];
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int c = 0; c < CT; ++c) acc[i][c] = A(0);

  if (__syncthreads_or(any)) {  // block-uniform: an all-dropped tile skips the whole reduction
    const int64_t khw = g.kh * g.kw;
    for (int64_t k0 = 0; k0 < g.Kg; k0 += BK) {
      // A chunk: row t % BM, k = t / BM + 4 q (consecutive threads -> consecutive positions)
#pragma unroll
      for (int q = 0; q < BK * BM / TPB; ++q) {
        const int row = t % BM, kk = t / BM + (TPB / BM) * q;
        const int64_t k = k0 + kk;
        A v = A(0);
        const int64_t xr = s_xrow[row];
        if (xr >= 0 && k < g.Kg) {
          const int64_t c = k / khw, rem = k % khw;
          const int64_t ih = s_ih0[row] + (rem / g.kw) * g.dh;
          const int64_t iw = s_iw0[row] + (rem % g.kw) * g.dw;
          if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = to_acc(x[xr + c * a.sxc + ih * a.sxh + iw * a.sxw]);
        }
        As[kk][row] = v;
      }
      // B chunk: k = t % BK, column t / BK + 16 q (consecutive threads -> consecutive k of a weight row)
#pragma unroll
      for (int q = 0; q < BK * BN / TPB; ++q) {
        const int kk = t % BK, col = t / BK + (TPB / BK) * q;
        const int64_t k = k0 + kk;
        const int64_t n = s_col[col];
        Bs[kk][col] = (n >= 0 && k < g.Kg) ? to_acc(w[n * g.Kg + k]) : A(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        A av[RT], bv[CT];
#pragma unroll
        for (int i = 0; i < RT; ++i) av[i] = As[kk][tx + 16 * i];
#pragma unroll
        for (int c = 0; c < CT; ++c) bv[c] = Bs[kk][ty + 16 * c];
#pragma unroll
        for (int i = 0; i < RT; ++i)
#pragma unroll
          for (int c = 0; c < CT; ++c) acc[i][c] = fma(av[i], bv[c], acc[i][c]);
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < RT; ++i) {
    const int row = tx + 16 * i;
    if (s_xrow[row] < 0) continue;
#pragma unroll
    for (int c = 0; c < CT; ++c) {
      const int64_t n = s_col[ty + 16 * c];
      if (n < 0) continue;
      A v = A(0);
      if (sel[i][c]) v = acc[i][c] + (bias ? to_acc(bias[n]) : A(0));
      store_acc(out + s_orow[row] + n * g.L, v);
    }
  }
}

template <typename T, typename A>
cudaError_t launch_typed(const ConvGeom& g, const SampledArgs& a, cudaStream_t stream) {
  const int64_t n_tiles_n = conv_tile::col_tiles(g.Ng, BN);
  const int64_t l_tiles = (g.L + BM - 1) / BM;
  const int64_t gx = a.perm != nullptr ? g.B * l_tiles : (g.B * g.L + BM - 1) / BM;
  return conv_tile::launch(sampled_product_kernel<T, A>, gx, n_tiles_n * g.groups, kSampledMaxColumnBlocks, stream,
                           g, a, n_tiles_n, l_tiles);
}

}  // namespace

cudaError_t launch_sampled_product(const ConvGeom& g, const SampledArgs& a, int dtype, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using Tag = decltype(tag);
    return launch_typed<typename Tag::type, typename Tag::math>(g, a, stream);
  });
}

}  // namespace fastnoise
