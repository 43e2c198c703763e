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

// Loads of a stored element in the accumulation type (float; double for double) and the rounding store back.
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store_acc(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_acc(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_acc(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_acc(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

}  // namespace fastnoise
