// CPU kernel: the raw / uniform / normal Philox stream (see csrc/philox.h for the layout).
#include <ATen/Parallel.h>
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
  if (kind == 0) {
    at::Tensor out = at::empty({count}, state.options().dtype(at::kLong));
    int64_t* o = out.data_ptr<int64_t>();
    at::parallel_for(0, count, kGrain, [&](int64_t b, int64_t e) {
      for_each_in_stream<int64_t>(
          st.seed, st.offset, b, e,
          [](const U32x4& w, int64_t* v) { v[0] = w.x; v[1] = w.y; v[2] = w.z; v[3] = w.w; },
          [&](int64_t i, int64_t x) { o[i] = x; });
    });
    return out;
  }
  at::Tensor out = at::empty({count}, state.options().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  at::parallel_for(0, count, kGrain, [&](int64_t b, int64_t e) {
    if (kind == 1) {
      for_each_in_stream<float>(
          st.seed, st.offset, b, e,
          [](const U32x4& w, float* v) {
            v[0] = uniform_from_bits(w.x); v[1] = uniform_from_bits(w.y);
            v[2] = uniform_from_bits(w.z); v[3] = uniform_from_bits(w.w);
          },
          [&](int64_t i, float x) { o[i] = x; });
    } else {
      fill_normals_cpu(st.seed, st.offset, b, e, o + b);  // vectorized Box-Muller (normal_cpu.h)
    }
  });
  return out;
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) { m.impl("philox", &fastnoise::philox_cpu); }
