// Device types of the dtype codes (common/dtype.h) for the .cu files (plain CUDA headers only).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/dtype.h"

namespace fastnoise {

template <typename T>
struct DtypeTag {
  using type = T;
  // the type the kernels compute in: double for double, float otherwise
  using math = float;
};
template <>
struct DtypeTag<double> {
  using type = double;
  using math = double;
};

// Calls f(DtypeTag<T>{}) with T the device type of `code` (float, __half, __nv_bfloat16, double) and returns
// its result; cudaErrorInvalidValue for an unknown code. Use: dispatch_dtype(code, [&](auto tag) {
// using T = typename decltype(tag)::type; ... }).
template <typename F>
inline cudaError_t dispatch_dtype(int code, F&& f) {
  switch (code) {
    case kDtypeF32: return f(DtypeTag<float>{});
    case kDtypeF16: return f(DtypeTag<__half>{});
    case kDtypeBF16: return f(DtypeTag<__nv_bfloat16>{});
    case kDtypeF64: return f(DtypeTag<double>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace fastnoise
