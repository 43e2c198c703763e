// Argument checks of the mask_blend kernels, shared by the CPU kernel and the CUDA glue (torch headers).
#pragma once
#include <ATen/ATen.h>

namespace fastnoise {

// The tensor viewed as [outer, F = size(dim), inner].
struct MaskBlendLayout {
  int64_t outer, feats, inner;
};

inline MaskBlendLayout check_mask_blend_args(const at::Tensor& z, const at::Tensor& za, int64_t keep, int64_t n,
                                             int64_t m, int64_t dim) {
  TORCH_CHECK(z.sizes() == za.sizes(), "mask_blend: za must have the shape of z, ", z.sizes(), ", got ", za.sizes());
  TORCH_CHECK(z.scalar_type() == za.scalar_type(), "mask_blend: za must have the dtype of z, ", z.scalar_type(),
              ", got ", za.scalar_type());
  TORCH_CHECK(z.device() == za.device(), "mask_blend: za must be on the device of z, ", z.device(), ", got ",
              za.device());
  TORCH_CHECK(z.dim() >= 1 && dim >= 0 && dim < z.dim(), "mask_blend: dim must be in [0, ", z.dim(), "), got ", dim);
  MaskBlendLayout l{1, z.size(dim), 1};
  for (int64_t d = 0; d < dim; ++d) l.outer *= z.size(d);
  for (int64_t d = dim + 1; d < z.dim(); ++d) l.inner *= z.size(d);
  if (m > 0) {
    TORCH_CHECK(n >= 1 && n <= m, "mask_blend: n must be in [1, m=", m, "], got ", n);
    TORCH_CHECK(l.feats % m == 0, "mask_blend: m must divide the size of dim (", l.feats, "), got ", m);
  } else {
    TORCH_CHECK(m == 0, "mask_blend: m must be >= 0, got ", m);
    TORCH_CHECK(keep >= 0 && keep <= l.feats, "mask_blend: keep must be in [0, ", l.feats, "], got ", keep);
  }
  return l;
}

inline void check_mask_blend_backward_args(const at::Tensor& grad, const at::Tensor& mask) {
  TORCH_CHECK(grad.sizes() == mask.sizes(), "mask_blend_backward: mask must have the shape of grad, ", grad.sizes(),
              ", got ", mask.sizes());
  TORCH_CHECK(mask.scalar_type() == at::kBool, "mask_blend_backward: mask must be bool, got ", mask.scalar_type());
  TORCH_CHECK(grad.device() == mask.device(), "mask_blend_backward: mask must be on the device of grad");
}

}  // namespace fastnoise
