// Dtype codes of the CUDA launchers, shared by every op family (plain C++: no torch, no CUDA types).
// The torch glue maps an at::ScalarType to a code (common/dtype_aten.h: dtype_code); the .cu files map a
// code back to a device type (common/dtype_cuda.cuh: dispatch_dtype). CPU kernels dispatch with ATen's
// AT_DISPATCH_FLOATING_TYPES(_AND2).
#pragma once

namespace fastnoise {

enum DtypeCode : int { kDtypeF32 = 0, kDtypeF16 = 1, kDtypeBF16 = 2, kDtypeF64 = 3 };

}  // namespace fastnoise
