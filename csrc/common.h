// Helpers shared by the C++ kernels (CPU and CUDA glue): argument checks and RNG state.
#pragma once
#include <ATen/ATen.h>
#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastnoise {

struct RngState {
  uint64_t seed;
  uint64_t offset;
};

// state: int64[2] = (seed, offset) on the CPU.
inline RngState read_rng_state(const at::Tensor& state) {
  TORCH_CHECK(state.scalar_type() == at::kLong && state.numel() == 2,
              "rng state must be an int64 tensor of 2 elements (seed, offset), got ", state.scalar_type(),
              " with ", state.numel(), " elements");
  TORCH_CHECK(state.device().is_cpu(), "rng state must be on the CPU for CPU kernels");
  auto s = state.contiguous();
  const int64_t* p = s.data_ptr<int64_t>();
  return {static_cast<uint64_t>(p[0]), static_cast<uint64_t>(p[1])};
}

// Grain size for at::parallel_for over elementwise work.
constexpr int64_t kGrain = 16384;

// Outputs of at least this many bytes are backed by transparent huge pages where the kernel allows it.
constexpr int64_t kHugeOutputBytes = 4 << 20;

// at::empty for an output the kernel writes in full. A large fresh block from glibc is mmap'ed memory that
// page-faults on first touch, 4 KiB at a time (~1 ms per 8 MB on the benchmark VM: an activation-sized
// output spends longer faulting than being written). madvise(MADV_HUGEPAGE) on the block's 2 MiB-aligned
// interior, before the first write, makes the faults 2 MiB each (THP "madvise" mode; a no-op where THP is
// off or the memory is already resident, e.g. reused by a caching allocator). Values are unaffected.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  if (bytes >= kHugeOutputBytes && t.device().is_cpu()) {
    constexpr uintptr_t kHuge = uintptr_t(2) << 20;
    const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t a = (p + kHuge - 1) & ~(kHuge - 1), e = (p + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
    if (e > a) (void)madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
  }
#endif
  return t;
}

}  // namespace fastnoise
