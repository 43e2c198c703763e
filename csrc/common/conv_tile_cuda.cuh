// Tile shape and launch of the implicit-im2col conv GEMM kernels (csrc/sampled/cuda.cu, csrc/noise_conv/cuda.cu;
// plain CUDA headers only): a block of TPB = 256 threads (16 x 16, RT x CT outputs each, rows tx + 16 i, columns
// ty + 16 c) owns a BM x BN tile (output positions x output channels of one group) and walks the reduction
// k = (c, ki, kj) in chunks of BK through shared memory. BN is the family's own (kSampledBlockN, kNcBlockN: the
// host glue sizes its buffers with it). The kernels' loops stay in their files (no shared helper in a kernel's
// hot loop: an earlier one halved the speed); this header holds only the constants and the host-side launch.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace fastnoise {
namespace conv_tile {

constexpr int BM = 64;       // rows (output positions) per tile
constexpr int BK = 16;       // reduction chunk
constexpr int TPB = 256;     // threads per block: 16 x 16
constexpr int RT = BM / 16;  // rows per thread

// Column blocks of a grid: ceil(Ng / bn) tiles per group.
inline int64_t col_tiles(int64_t ng, int bn) { return (ng + bn - 1) / bn; }

// Launch `kernel` on a gx x gy grid of TPB-thread blocks with `args`: cudaErrorInvalidValue for a grid CUDA
// cannot launch (gx >= 2**31 or gy > max_gy), nothing for an empty grid, else the launch's error.
template <typename Kernel, typename... Args>
inline cudaError_t launch(Kernel kernel, int64_t gx, int64_t gy, int64_t max_gy, cudaStream_t stream,
                          const Args&... args) {
  if (gx > 0x7fffffffLL || gy > max_gy) return cudaErrorInvalidValue;
  if (gx == 0 || gy == 0) return cudaSuccess;
  kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), TPB, 0, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace conv_tile
}  // namespace fastnoise
