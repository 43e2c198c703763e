// CPU kernel: the raw / uniform / normal Philox stream (see csrc/philox.h for the layout).
#include <ATen/Parallel.h>
#include <string.h>

#include <algorithm>
#include <torch/library.h>

#include "common.h"
#include "normal_cpu.h"
#include "philox.h"

namespace fastnoise {
namespace {

at::Tensor philox_cpu(const at::Tensor& state, int64_t count, int64_t kind) {
  TORCH_CHECK(count >= 0, "count must be >= 0, got ", count);
  TORCH_CHECK(kind >= 0 && kind <= 2, "kind must be 0 (raw), 1 (uniform) or 2 (normal), got ", kind);
  const RngState st = read_rng_state(state);
  // vectorized Philox (csrc/normal_cpu.h); every value depends on (seed, offset + i) only
  if (kind == 0) {
    at::Tensor out = empty_output({count}, state.options().dtype(at::kLong));
    int64_t* o = out.data_ptr<int64_t>();
    at::parallel_for(0, count, kGrain, [&](int64_t b, int64_t e) {
      constexpr int64_t kChunk = 1024;
      alignas(64) uint32_t w[kChunk];
      for (int64_t c0 = b; c0 < e; c0 += kChunk) {
        const int64_t m = std::min(kChunk, e - c0);
        fill_raw_cpu(st.seed, st.offset, c0, c0 + m, w);
        for (int64_t k = 0; k < m; ++k) o[c0 + k] = w[k];
      }
    });
    return out;
  }
  at::Tensor out = empty_output({count}, state.options().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  at::parallel_for(0, count, kGrain, [&](int64_t b, int64_t e) {
    if (kind == 1) {
      fill_uniforms_cpu(st.seed, st.offset, b, e, o + b);
    } else {
      fill_normals_cpu(st.seed, st.offset, b, e, o + b);
    }
  });
  return out;
}

// The CPU Box-Muller (csrc/normal_cpu.h) of given Philox blocks: words int64 [n, 4] (values < 2^32) ->
// float32 [n, 4], the normals the stream has for those words. For tests of the transform's accuracy on
// chosen words (every radius, every angle); the stream kernels call the same box_muller_step.
at::Tensor box_muller_cpu(const at::Tensor& words_in) {
  TORCH_CHECK(words_in.scalar_type() == at::kLong && words_in.dim() == 2 && words_in.size(1) == 4,
              "words must be an int64 tensor of shape [n, 4], got ", words_in.scalar_type(), " of shape ",
              words_in.sizes());
  const at::Tensor words = words_in.contiguous();
  const int64_t n = words.size(0);
  at::Tensor out = at::empty({n, 4}, words.options().dtype(at::kFloat));
  const int64_t* wp = words.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  using namespace philox_vec;
  at::parallel_for(0, (n + kBlocks - 1) / kBlocks, 16, [&](int64_t b, int64_t e) {
    for (int64_t step = b; step < e; ++step) {
      const int64_t r0 = step * kBlocks, nr = std::min<int64_t>(kBlocks, n - r0);
      alignas(64) uint32_t w[4][kBlocks];
      for (int64_t l = 0; l < kBlocks; ++l)
        for (int j = 0; j < 4; ++j) w[j][l] = static_cast<uint32_t>(wp[4 * (r0 + std::min(l, nr - 1)) + j]);
      alignas(64) float f[4][kBlocks];
      box_muller_blocks(&w[0][0], &f[0][0]);
      for (int64_t l = 0; l < nr; ++l)
        for (int j = 0; j < 4; ++j) op[4 * (r0 + l) + j] = f[j][l];
    }
  });
  return out;
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("philox", &fastnoise::philox_cpu);
  m.impl("box_muller", &fastnoise::box_muller_cpu);
}
