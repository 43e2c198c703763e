// Configuration and stream layout of the noise-conv kernels (plain C++: shared by the CPU kernel, the CUDA
// kernel and their torch glue). The Python side is fastnoise/ops/noise_conv.py (`Config`, `layout`).
//
// cfg (int[12] of the kernel schema): in_mode, in_inner_a, in_inner_b, in_shared, in_std, w_mode, w_inner,
// w_std, out_mode, out_inner, out_shared, out_std. Sites:
//   input   mode 1 mul  x' = x * (a + s_in * b * delta)   a = mu, b = sigma            (CTRW)
//           mode 2 add  x' = x + s_in * b * delta           b = sigma                    (RSE, PNI-A in)
//   weight  mode 1 add  W' = W + keep * s_w * alpha * eta                                (PNI-W, CNI)
//           mode 2 replace  W'[n] = s_w * alpha * eta[n] where replace[n], W[n] else      (RPF)
//   output  mode 1 add  y = y0 + s_out * sigma * eps                                      (PNI-A out)
// s = scale * std(site tensor) (detached, unbiased, whole tensor) when the site's std flag is set, else scale.
// A flat parameter p[P] with `inner` gives element j (flat, within one sample for activations) the value
// p[(j / inner) % P].
//
// Stream layout (element offsets relative to the state's offset; r4 rounds up to a multiple of 4):
//   input  element (b, c, h, w)  -> base_in  + b*C*H*W + c*H*W + h*W + w   (shared: no b term)
//   weight element (n, c, i, j)  -> base_w   + flat index in [N, C/groups, kh, kw]
//   output element (b, n, h, w)  -> base_out + b*N*Ho*Wo + n*Ho*Wo + h*Wo + w  (shared: no b term)
//   base_in = 0, base_w = r4(n_in), base_out = base_w + r4(n_w), total = base_out + r4(n_out).
#pragma once
#include <stdint.h>

#include "common/conv_geom.h"

namespace fastnoise {

enum NcInMode : int { kNcInNone = 0, kNcInMul = 1, kNcInAdd = 2 };
enum NcWMode : int { kNcWNone = 0, kNcWAdd = 1, kNcWReplace = 2 };
enum NcOutMode : int { kNcOutNone = 0, kNcOutAdd = 1 };
// bits of `need` in the backward kernel
enum NcNeed : int {
  kNcNeedX = 1, kNcNeedW = 2, kNcNeedBias = 4, kNcNeedInA = 8, kNcNeedInB = 16, kNcNeedWAlpha = 32, kNcNeedOutSigma = 64
};
constexpr int kNcConfigLen = 12;

struct NoiseConvConfig {
  int64_t in_mode, in_inner_a, in_inner_b;
  bool in_shared, in_std;
  int64_t w_mode, w_inner;
  bool w_std;
  int64_t out_mode, out_inner;
  bool out_shared, out_std;
};

inline NoiseConvConfig nc_config(const int64_t* c) {
  return {c[0], c[1], c[2], c[3] != 0, c[4] != 0, c[5], c[6], c[7] != 0, c[8], c[9], c[10] != 0, c[11] != 0};
}

inline int64_t nc_r4(int64_t n) { return (n + 3) / 4 * 4; }

struct NcLayout {
  int64_t base_in, base_w, base_out, total;
  int64_t n_in, n_w, n_out;  // stream elements of each site
  int64_t chw, nl;           // elements of one input sample, one output sample
};

inline NcLayout nc_layout(const NoiseConvConfig& c, const ConvGeom& g) {
  NcLayout l{};
  l.chw = g.C * g.H * g.W;
  l.nl = g.N * g.L;
  l.n_in = c.in_mode == kNcInNone ? 0 : (c.in_shared ? l.chw : g.B * l.chw);
  l.n_w = c.w_mode == kNcWNone ? 0 : g.N * g.Kg;
  l.n_out = c.out_mode == kNcOutNone ? 0 : (c.out_shared ? l.nl : g.B * l.nl);
  l.base_in = 0;
  l.base_w = nc_r4(l.n_in);
  l.base_out = l.base_w + nc_r4(l.n_w);
  l.total = l.base_out + nc_r4(l.n_out);
  return l;
}

}  // namespace fastnoise
