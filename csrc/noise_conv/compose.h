// Device-agnostic pieces of the noise-conv kernels on ATen (torch headers), shared by csrc/noise_conv/cpu.cpp
// and cuda_glue.cpp: argument checks, the site amplitudes s, the noise of the small sites (the weight, a
// batch-shared draw) as tensors, the noisy input x' and weight W', and the whole backward:
//
//   backward: eps / eta / delta are regenerated from the state (never stored); x' and W' are rebuilt,
//   at::convolution_backward gives (dL/dx', dL/dW', dL/db), then the site gradients: per-sample sites
//   through the noise kernels (fastnoise_kernels::noise_forward / noise_backward, called through the
//   dispatcher, so the same code serves CPU and CUDA tensors), batch-shared sites and the weight by
//   ATen reductions over the small [C*H*W] / [N*Ho*Wo] / W-sized terms.
//
// Normals come from fastnoise_kernels::philox (kind 2) and the noise kernels: bit for bit those of
// fastnoise.rng.normal on the same device. Math type md: float32 (float64 for float64 data).
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <array>
#include <tuple>

#include "noise/args.h"
#include "noise/noise_math.h"
#include "noise_conv/config.h"
#include "sampled/aten_common.h"
#include "common/conv_geom.h"

namespace fastnoise {

// ---- the noise family's kernels through the dispatcher -------------------------------------------

inline at::Tensor nc_philox(const at::Tensor& state, int64_t count, int64_t kind) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastnoise_kernels::philox", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, int64_t)>();
  return op.call(state, count, kind);
}

inline at::Tensor nc_noise_forward(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                                   const at::Tensor& state, int64_t op, int64_t inner_a, int64_t inner_b) {
  static auto fn = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastnoise_kernels::noise_forward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         int64_t, int64_t, int64_t)>();
  return fn.call(x, a, b, state, op, inner_a, inner_b);
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nc_noise_backward(
    const at::Tensor& g, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& state,
    int64_t op, int64_t inner_a, int64_t inner_b, int64_t need) {
  static auto fn = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastnoise_kernels::noise_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, int64_t, int64_t, int64_t, int64_t)>();
  return fn.call(g, x, a, b, state, op, inner_a, inner_b, need);
}

// ---- the arguments of one call ------------------------------------------------------------------

struct NcArgs {
  at::Tensor x, weight, in_a, in_b, w_alpha, out_sigma, state;
  c10::optional<at::Tensor> bias, w_mask;
  at::IntArrayRef stride, padding, dilation;
  int64_t groups;
  NoiseConvConfig c;
  ConvGeom g;
  NcLayout lay;
  at::ScalarType md;
};

inline void nc_check_param(const char* name, const at::Tensor& p, const at::Tensor& x, bool used, int64_t inner,
                           int64_t span) {
  TORCH_CHECK(p.dim() == 1, name, " must be a 1-D parameter tensor in the kernel layout, got ", p.dim(), " dims");
  TORCH_CHECK(p.scalar_type() == noise_math_type(x.scalar_type()), name, " must have dtype ",
              noise_math_type(x.scalar_type()), " for x of dtype ", x.scalar_type(), ", got ", p.scalar_type());
  TORCH_CHECK(p.device() == x.device(), name, " must be on ", x.device(), ", got ", p.device());
  if (!used) return;
  TORCH_CHECK(p.numel() >= 1 && inner >= 1 && span % (p.numel() * inner) == 0, name, ": P = ", p.numel(),
              " values with inner ", inner, " must tile the site's ", span, " elements");
}

inline NcArgs nc_args(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      const at::Tensor& in_a, const at::Tensor& in_b, const at::Tensor& w_alpha,
                      const c10::optional<at::Tensor>& w_mask, const at::Tensor& out_sigma, const at::Tensor& state,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                      at::IntArrayRef cfg) {
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble,
              "x must be float32, float16, bfloat16 or float64, got ", t);
  TORCH_CHECK(weight.scalar_type() == t && weight.device() == x.device(), "weight must have the dtype and device of x");
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == t && bias->device() == x.device(), "bias must have the dtype and device of x");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "bias must have shape [", weight.size(0), "]");
  }
  TORCH_CHECK(cfg.size() == kNcConfigLen, "cfg must have ", kNcConfigLen, " entries, got ", cfg.size());
  TORCH_CHECK(state.scalar_type() == at::kLong && state.numel() == 2 && state.device() == x.device(),
              "state must be an int64 tensor [seed, offset] on the device of x");
  NcArgs a{x, weight, in_a, in_b, w_alpha, out_sigma, state, bias, w_mask, stride, padding, dilation, groups,
           nc_config(cfg.data()), conv_geom(x, weight, stride, padding, dilation, groups), {},
           noise_math_type(t)};
  a.lay = nc_layout(a.c, a.g);
  const NoiseConvConfig& c = a.c;
  TORCH_CHECK(c.in_mode >= 0 && c.in_mode <= 2 && c.w_mode >= 0 && c.w_mode <= 2 && c.out_mode >= 0 && c.out_mode <= 1,
              "cfg: bad site mode (input ", c.in_mode, ", weight ", c.w_mode, ", output ", c.out_mode, ")");
  nc_check_param("in_a", in_a, x, c.in_mode == kNcInMul, c.in_inner_a, a.lay.chw);
  nc_check_param("in_b", in_b, x, c.in_mode != kNcInNone, c.in_inner_b, a.lay.chw);
  nc_check_param("w_alpha", w_alpha, x, c.w_mode != kNcWNone, c.w_inner, weight.numel());
  nc_check_param("out_sigma", out_sigma, x, c.out_mode != kNcOutNone, c.out_inner, a.lay.nl);
  if (c.w_mode == kNcWReplace) {
    TORCH_CHECK(w_mask.has_value() && w_mask->scalar_type() == at::kBool && w_mask->numel() == a.g.N,
                "w_mask (replace) must be a bool tensor of ", a.g.N, " output-channel flags");
    TORCH_CHECK(groups == 1, "weight replace (RPF) supports groups = 1 only, got ", groups);
  } else if (c.w_mode == kNcWAdd && w_mask.has_value()) {
    TORCH_CHECK(w_mask->scalar_type() == at::kBool && w_mask->sizes() == weight.sizes(),
                "w_mask (keep) must be a bool tensor of the weight's shape ", weight.sizes());
  }
  return a;
}

// ---- small helpers ------------------------------------------------------------------------------

// [seed, offset + base] as a new tensor on the state's device (no host round trip on a GPU).
inline at::Tensor nc_site_state(const at::Tensor& state, int64_t base) {
  at::Tensor st = state.clone();
  if (base != 0) st.narrow(0, 1, 1).add_(base);
  return st;
}

inline at::Tensor nc_normals(const NcArgs& a, int64_t base, int64_t n) {
  return nc_philox(nc_site_state(a.state, base), n, 2).to(a.md);
}

// A flat parameter p[P] expanded to the n elements of one site sample (element j -> p[(j / inner) % P]).
inline at::Tensor nc_expand(const at::Tensor& p, int64_t inner, int64_t n) {
  const int64_t P = p.numel();
  return p.view({1, P, 1}).expand({n / (P * inner), P, inner}).reshape({n});
}

// Per-element terms t[n] of one site sample -> the [P] gradient of its parameter.
inline at::Tensor nc_reduce(const at::Tensor& t, int64_t P, int64_t inner) {
  return t.reshape({-1, P, inner}).sum(at::IntArrayRef{0, 2}, false, at::kDouble).to(t.scalar_type());
}

// s = scale * std(t) (unbiased, whole tensor, detached; 0 below two elements) or scale: a 0-d md tensor.
inline at::Tensor nc_amp(const at::Tensor& t, bool use_std, double scale, at::ScalarType md) {
  if (!use_std) return at::full({}, scale, t.options().dtype(md));
  if (t.numel() < 2) return at::zeros({}, t.options().dtype(md));
  return at::std(t.to(md)) * scale;
}

// The stats output: the amplitudes s of the three sites, md [3] (saved for the backward).
inline at::Tensor nc_stats(const at::Tensor& s_in, const at::Tensor& s_w, const at::Tensor& s_out) {
  return at::stack({s_in.reshape({}), s_w.reshape({}), s_out.reshape({})});
}

// ---- input site -------------------------------------------------------------------------------

// Batch-shared draw: the per-element factor f[C*H*W] in md: mul: a + s b delta; add: s b delta.
inline at::Tensor nc_input_factor(const NcArgs& a, const at::Tensor& s_in) {
  const int64_t n = a.lay.chw;
  const at::Tensor d = nc_normals(a, a.lay.base_in, n);
  const at::Tensor sb = nc_expand(a.in_b, a.c.in_inner_b, n) * s_in;
  at::Tensor f = sb * d;
  if (a.c.in_mode == kNcInMul) f = nc_expand(a.in_a, a.c.in_inner_a, n) + f;
  return f;
}

// x' in x's dtype (and x's channels-last layout, so that the conv runs the algorithm F.conv2d runs on x).
inline at::Tensor nc_input_prime(const NcArgs& a, const at::Tensor& s_in) {
  const at::Tensor& x = a.x;
  const bool cl = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor xp;
  if (a.c.in_shared) {
    const at::Tensor f = nc_input_factor(a, s_in).view({a.g.C, a.g.H, a.g.W});
    xp = (a.c.in_mode == kNcInMul ? x * f : x + f);
  } else {
    const at::Tensor st = nc_site_state(a.state, a.lay.base_in);
    const at::Tensor sb = a.in_b * s_in;
    if (a.c.in_mode == kNcInMul) {
      xp = nc_noise_forward(x, a.in_a, sb, st, kNoiseMul, a.c.in_inner_a, a.c.in_inner_b);
    } else {
      xp = nc_noise_forward(x, sb, sb.new_empty({0}), st, kNoiseAdd, a.c.in_inner_b, 1);
    }
    if (cl) xp = xp.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return xp.scalar_type() == x.scalar_type() ? xp : xp.to(x.scalar_type());
}

// ---- weight site ------------------------------------------------------------------------------

// s_w * alpha * eta, md, the weight's shape.
inline at::Tensor nc_weight_noise(const NcArgs& a, const at::Tensor& s_w) {
  const int64_t n = a.weight.numel();
  const at::Tensor eta = nc_normals(a, a.lay.base_w, n);
  return (nc_expand(a.w_alpha, a.c.w_inner, n) * s_w * eta).view(a.weight.sizes());
}

inline at::Tensor nc_weight_prime(const NcArgs& a, const at::Tensor& noise) {
  const at::Tensor wm = a.weight.to(a.md);
  at::Tensor wp;
  if (a.c.w_mode == kNcWReplace) {
    wp = at::where(a.w_mask->view({a.g.N, 1, 1, 1}), noise, wm);
  } else {
    wp = wm + (a.w_mask.has_value() ? at::where(*a.w_mask, noise, at::zeros({}, noise.options())) : noise);
  }
  return wp.to(a.weight.scalar_type()).contiguous();
}

// ---- the dense product --------------------------------------------------------------------------

inline bool nc_is_linear(const NcArgs& a) {
  const ConvGeom& g = a.g;
  return g.H == 1 && g.W == 1 && g.kh == 1 && g.kw == 1 && g.groups == 1 && g.ph == 0 && g.pw == 0;
}

// conv2d(x', W', bias); a linear layer (1x1 geometry on 1x1 inputs) as one GEMM. Contiguous NCHW output.
inline at::Tensor nc_conv(const NcArgs& a, const at::Tensor& xp, const at::Tensor& wp) {
  const ConvGeom& g = a.g;
  if (nc_is_linear(a)) {
    const at::Tensor x2 = xp.reshape({g.B, g.C}), w2 = wp.reshape({g.N, g.C});
    at::Tensor y = a.bias.has_value() ? at::addmm(*a.bias, x2, w2.t()) : at::mm(x2, w2.t());
    return y.view({g.B, g.N, 1, 1});
  }
  return at::convolution(xp, wp, a.bias, a.stride, a.padding, a.dilation, false, {0, 0}, a.groups)
      .contiguous();
}

// (dL/dx', dL/dW', dL/db) of the dense product.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> nc_conv_backward(const NcArgs& a, const at::Tensor& g,
                                                                       const at::Tensor& xp, const at::Tensor& wp,
                                                                       bool nx, bool nw, bool nb) {
  const ConvGeom& ge = a.g;
  if (g.numel() == 0 || xp.numel() == 0) {
    return {at::zeros_like(xp), at::zeros_like(wp), at::zeros({ge.N}, g.options())};
  }
  if (nc_is_linear(a)) {
    const at::Tensor g2 = g.reshape({ge.B, ge.N});
    at::Tensor gx, gw, gb;
    if (nx) gx = at::mm(g2, wp.reshape({ge.N, ge.C})).view(xp.sizes());
    if (nw) gw = at::mm(g2.t(), xp.reshape({ge.B, ge.C})).view(wp.sizes());
    if (nb) gb = g2.sum(0);
    return {gx, gw, gb};
  }
  return at::convolution_backward(g, xp, wp, at::IntArrayRef{ge.N}, a.stride, a.padding, a.dilation, false, {0, 0},
                                  a.groups, {nx, nw, nb});
}

// ---- output site (the generic path; the CPU kernel adds per-sample noise in place instead) -----------

// y0 + s_out * sigma * eps (new tensor for per-sample noise through the noise kernel; in place if shared).
inline at::Tensor nc_output_apply(const NcArgs& a, at::Tensor y, const at::Tensor& s_out) {
  if (a.c.out_shared) {
    const int64_t n = a.lay.nl;
    const at::Tensor f = nc_expand(a.out_sigma, a.c.out_inner, n) * s_out * nc_normals(a, a.lay.base_out, n);
    if (y.scalar_type() == a.md) return y.add_(f.view({1, a.g.N, a.g.Ho, a.g.Wo}));
    return (y.to(a.md) + f.view({1, a.g.N, a.g.Ho, a.g.Wo})).to(y.scalar_type());
  }
  const at::Tensor amp = a.out_sigma * s_out;
  return nc_noise_forward(y, amp, amp.new_empty({0}), nc_site_state(a.state, a.lay.base_out), kNoiseAdd,
                          a.c.out_inner, 1);
}

// ---- backward ---------------------------------------------------------------------------------

inline at::Tensor nc_param_grad(const at::Tensor& t, int64_t P) {
  return t.numel() == P ? t : at::zeros({P}, t.options());
}

// (grad_x, grad_weight, grad_bias, grad_in_a, grad_in_b, grad_w_alpha, grad_out_sigma); empty if not needed.
inline std::array<at::Tensor, 7> nc_backward(const at::Tensor& grad_, const NcArgs& a, const at::Tensor& stats,
                                             int64_t need) {
  const NoiseConvConfig& c = a.c;
  const ConvGeom& ge = a.g;
  const at::Tensor g = grad_.contiguous();
  TORCH_CHECK(g.dim() == 4 && g.size(0) == ge.B && g.size(1) == ge.N && g.size(2) == ge.Ho && g.size(3) == ge.Wo,
              "grad must have the output shape [", ge.B, ", ", ge.N, ", ", ge.Ho, ", ", ge.Wo, "]");
  const auto mopt = a.x.options().dtype(a.md);
  std::array<at::Tensor, 7> out;
  for (auto& t : out) t = at::empty({0}, mopt);
  out[0] = at::empty({0}, a.x.options());
  out[1] = at::empty({0}, a.x.options());
  out[2] = at::empty({0}, a.x.options());
  const at::Tensor s = stats.to(a.md);
  const at::Tensor s_in = s[0], s_w = s[1], s_out = s[2];

  // output site: y = y0 + s sigma eps -> dL/dy0 = g, dL/dsigma = s * sum g eps
  if ((need & kNcNeedOutSigma) && c.out_mode != kNcOutNone) {
    const int64_t P = a.out_sigma.numel();
    if (c.out_shared) {
      const at::Tensor e = nc_normals(a, a.lay.base_out, a.lay.nl);
      const at::Tensor t = g.to(a.md).sum(0).reshape({a.lay.nl}) * e;
      out[6] = nc_reduce(t, P, c.out_inner) * s_out;
    } else {
      const at::Tensor amp = a.out_sigma * s_out;
      auto r = nc_noise_backward(g, g, amp, amp.new_empty({0}), nc_site_state(a.state, a.lay.base_out), kNoiseAdd,
                                 c.out_inner, 1, kNeedA);
      out[6] = nc_param_grad(std::get<1>(r), P) * s_out;
    }
  }

  const bool nxp = need & (kNcNeedX | kNcNeedInA | kNcNeedInB);
  const bool nwp = need & (kNcNeedW | kNcNeedWAlpha);
  const bool nb = need & kNcNeedBias;
  if (!(nxp || nwp || nb)) return out;
  // rebuild x' (needed for dL/dW') and W' (needed for dL/dx'); the noise comes from the same state
  const bool in_site = c.in_mode != kNcInNone;
  const at::Tensor xp = (nwp && in_site) ? nc_input_prime(a, s_in) : a.x;
  const at::Tensor wp = (nxp && c.w_mode != kNcWNone) ? nc_weight_prime(a, nc_weight_noise(a, s_w)) : a.weight;
  at::Tensor gxp, gwp, gb;
  std::tie(gxp, gwp, gb) = nc_conv_backward(a, g, xp, wp, nxp, nwp, nb);
  if (nb) out[2] = gb.to(a.x.scalar_type());

  // input site
  if (nxp) {
    if (!in_site) {
      out[0] = gxp;
    } else if (c.in_shared) {
      const at::Tensor d = nc_normals(a, a.lay.base_in, a.lay.chw);
      const bool nparams = need & (kNcNeedInA | kNcNeedInB);
      at::Tensor t;  // sum over the batch of dL/dx' * x (mul) or dL/dx' (add), [C*H*W]
      if (c.in_mode == kNcInMul) {
        if (need & kNcNeedX) {
          const at::Tensor f = nc_input_factor(a, s_in).view({ge.C, ge.H, ge.W});
          out[0] = (gxp * f).to(a.x.scalar_type());
        }
        if (nparams) t = (gxp.to(a.md) * a.x.to(a.md)).sum(0).reshape({a.lay.chw});
        if (need & kNcNeedInA) out[3] = nc_reduce(t, a.in_a.numel(), c.in_inner_a);
      } else {
        if (need & kNcNeedX) out[0] = gxp;
        if (nparams) t = gxp.to(a.md).sum(0).reshape({a.lay.chw});
      }
      if (need & kNcNeedInB) out[4] = nc_reduce(t * d, a.in_b.numel(), c.in_inner_b) * s_in;
    } else {
      const at::Tensor st = nc_site_state(a.state, a.lay.base_in);
      const at::Tensor sb = a.in_b * s_in;
      if (c.in_mode == kNcInMul) {
        const int64_t nn = ((need & kNcNeedX) ? kNeedX : 0) | ((need & kNcNeedInA) ? kNeedA : 0) |
                           ((need & kNcNeedInB) ? kNeedB : 0);
        auto r = nc_noise_backward(gxp, a.x, a.in_a, sb, st, kNoiseMul, c.in_inner_a, c.in_inner_b, nn);
        if (need & kNcNeedX) out[0] = std::get<0>(r);
        if (need & kNcNeedInA) out[3] = nc_param_grad(std::get<1>(r), a.in_a.numel());
        if (need & kNcNeedInB) out[4] = nc_param_grad(std::get<2>(r), a.in_b.numel()) * s_in;
      } else {
        if (need & kNcNeedX) out[0] = gxp;
        if (need & kNcNeedInB) {
          auto r = nc_noise_backward(gxp, gxp, sb, sb.new_empty({0}), st, kNoiseAdd, c.in_inner_b, 1, kNeedA);
          out[4] = nc_param_grad(std::get<1>(r), a.in_b.numel()) * s_in;
        }
      }
    }
    if ((need & kNcNeedX) && out[0].scalar_type() != a.x.scalar_type()) out[0] = out[0].to(a.x.scalar_type());
  }

  // weight site
  if (nwp) {
    if (need & kNcNeedW) {
      if (c.w_mode == kNcWReplace) {
        out[1] = gwp * at::logical_not(*a.w_mask).view({ge.N, 1, 1, 1}).to(gwp.scalar_type());
      } else {
        out[1] = gwp;
      }
    }
    if ((need & kNcNeedWAlpha) && c.w_mode != kNcWNone) {
      // dW'/dalpha = s eta where the noise applies (keep / replace)
      const int64_t n = a.weight.numel();
      at::Tensor t = gwp.to(a.md) * nc_normals(a, a.lay.base_w, n).view(a.weight.sizes());
      if (c.w_mode == kNcWReplace) {
        t = t * a.w_mask->view({ge.N, 1, 1, 1}).to(a.md);
      } else if (a.w_mask.has_value()) {
        t = t * a.w_mask->to(a.md);
      }
      out[5] = nc_reduce(t.reshape({n}), a.w_alpha.numel(), c.w_inner) * s_w;
    }
  }
  return out;
}

// ---- the kernels' shared bodies (cpu.cpp, cuda_glue.cpp: each adds only its device check) ----------------

// The forward's checked arguments: `scales` (input, weight, output) and everything nc_args checks.
inline NcArgs nc_forward_args(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& in_a, const at::Tensor& in_b, const at::Tensor& w_alpha,
                              const c10::optional<at::Tensor>& w_mask, const at::Tensor& out_sigma,
                              const at::Tensor& state, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups, at::IntArrayRef cfg,
                              at::ArrayRef<double> scales) {
  TORCH_CHECK(scales.size() == 3, "scales must have 3 entries (input, weight, output), got ", scales.size());
  return nc_args(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation, groups,
                 cfg);
}

using NcGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// fastnoise_kernels::noise_conv2d_backward on either device: the arguments checked, then nc_backward.
inline NcGrads nc_backward_op(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& in_a, const at::Tensor& in_b, const at::Tensor& w_alpha,
                              const c10::optional<at::Tensor>& w_mask, const at::Tensor& out_sigma,
                              const at::Tensor& state, const at::Tensor& stats, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef cfg,
                              int64_t need) {
  const NcArgs a = nc_args(x, weight, c10::nullopt, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding,
                           dilation, groups, cfg);
  auto r = nc_backward(grad, a, stats, need);
  return {r[0], r[1], r[2], r[3], r[4], r[5], r[6]};
}

}  // namespace fastnoise
