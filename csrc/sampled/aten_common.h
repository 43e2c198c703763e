// Torch-side helpers of the sampled family shared by csrc/sampled/cpu.cpp and cuda_glue.cpp:
// argument checks, conv geometry from tensors, and the dense backward on masked gradients.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

#include "common/conv_geom.h"

namespace fastnoise {

inline void check_pair(const char* name, at::IntArrayRef v, int64_t lo) {
  TORCH_CHECK(v.size() == 2, name, " must have 2 elements, got ", v.size());
  TORCH_CHECK(v[0] >= lo && v[1] >= lo, name, " must be >= ", lo, ", got ", v);
}

inline void check_sampled_inputs(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                 const at::Tensor& mask) {
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "weight must have the dtype of x, ", x.scalar_type());
  TORCH_CHECK(weight.device() == x.device() && mask.device() == x.device(), "x, weight and mask must share a device");
  TORCH_CHECK(mask.scalar_type() == at::kBool, "mask must be a bool tensor, got ", mask.scalar_type());
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(),
                "bias must have the dtype and device of x");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "bias must have shape [", weight.size(0), "]");
  }
}

inline ConvGeom conv_geom(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(x.dim() == 4, "x must be 4-D [B, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK(weight.dim() == 4, "weight must be 4-D [n, C/groups, kh, kw], got ", weight.dim(), "-D");
  check_pair("stride", stride, 1);
  check_pair("padding", padding, 0);
  check_pair("dilation", dilation, 1);
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0 && weight.size(0) % groups == 0,
              "groups must divide the input and output channels, got ", groups);
  TORCH_CHECK(weight.size(1) * groups == x.size(1), "weight must have C/groups = ", x.size(1) / groups,
              " input channels, got ", weight.size(1));
  ConvGeom g = make_conv_geom(x.size(0), x.size(1), x.size(2), x.size(3), weight.size(0), weight.size(2),
                              weight.size(3), stride[0], stride[1], padding[0], padding[1], dilation[0],
                              dilation[1], groups);
  TORCH_CHECK(g.Ho >= 1 && g.Wo >= 1, "output size must be positive, got ", g.Ho, "x", g.Wo);
  return g;
}

// A linear layer as the conv geometry with H = W = kh = kw = 1: x [R, K], weight [N, K], mask [R, N].
inline ConvGeom linear_geom(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& mask) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && weight.size(1) == x.size(1),
              "sampled_linear: x [R, K] and weight [N, K] expected");
  const int64_t R = x.size(0), K = x.size(1), N = weight.size(0);
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == R && mask.size(1) == N, "mask must have shape [", R, ", ", N, "]");
  return make_conv_geom(R, K, 1, 1, N, 1, 1, 1, 1, 0, 0, 1, 1, 1);
}

// Position-granularity mask [B, N, Ho, Wo] and channel-granularity keep [B, N] of a conv.
inline void check_position_mask(const at::Tensor& mask, const ConvGeom& g) {
  TORCH_CHECK(mask.dim() == 4 && mask.size(0) == g.B && mask.size(1) == g.N && mask.size(2) == g.Ho &&
                  mask.size(3) == g.Wo,
              "mask must have shape [", g.B, ", ", g.N, ", ", g.Ho, ", ", g.Wo, "]");
}

inline void check_channel_keep(const at::Tensor& keep, const ConvGeom& g) {
  TORCH_CHECK(keep.dim() == 2 && keep.size(0) == g.B && keep.size(1) == g.N,
              "keep must have shape [", g.B, ", ", g.N, "]");
}

inline at::Tensor zero_where_not(const at::Tensor& mask, const at::Tensor& t) {
  return at::where(mask, t, at::zeros({}, t.options()));
}

// Backward of both products in the dense formulation on masked gradients: grad_out is zeroed where
// the mask is False, then the ordinary (GEMM / conv) backward runs. This is the fastest correct
// choice on CPU above a keep fraction of a few percent (the dense backward runs at GEMM speed).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_linear_backward_dense(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& mask) {
  TORCH_CHECK(grad.dim() == 2 && x.dim() == 2 && weight.dim() == 2 && mask.sizes() == grad.sizes(),
              "sampled_linear_backward: grad [R, N], x [R, K], weight [N, K], mask [R, N] expected");
  at::Tensor g = zero_where_not(mask, grad);
  return {at::mm(g, weight), at::mm(g.t(), x), g.sum(0)};
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> sampled_conv2d_backward_dense(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& mask,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  conv_geom(x, weight, stride, padding, dilation, groups);
  at::Tensor g = zero_where_not(mask, grad);
  if (g.numel() == 0 || x.numel() == 0) {
    return {at::zeros_like(x), at::zeros_like(weight), at::zeros({weight.size(0)}, g.options())};
  }
  auto r = at::convolution_backward(g, x, weight, at::IntArrayRef{weight.size(0)}, stride, padding, dilation,
                                    false, {0, 0}, groups, {true, true, true});
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

}  // namespace fastnoise
