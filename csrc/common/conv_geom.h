// Conv geometry shared by the CPU kernels, the CUDA kernels and their glue (plain C++: no torch).
#pragma once
#include <stdint.h>

namespace fastnoise {

// x [B, C, H, W], weight [N, C/groups, kh, kw], output / mask [B, N, Ho, Wo] (all contiguous NCHW).
// A 2-D product (linear) is the conv with H = W = kh = kw = 1: rows are samples, K = C.
struct ConvGeom {
  int64_t B, C, H, W;      // input
  int64_t N, kh, kw;       // output channels, kernel
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t Ho, Wo;          // output spatial size
  int64_t Cg, Ng, Kg, L;   // channels per group (in / out), reduction length Cg*kh*kw, Ho*Wo
};

inline ConvGeom make_conv_geom(int64_t B, int64_t C, int64_t H, int64_t W, int64_t N, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                               int64_t groups) {
  ConvGeom g{B, C, H, W, N, kh, kw, sh, sw, ph, pw, dh, dw, groups, 0, 0, 0, 0, 0, 0};
  g.Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  g.Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  g.Cg = C / groups;
  g.Ng = N / groups;
  g.Kg = g.Cg * kh * kw;
  g.L = g.Ho * g.Wo;
  return g;
}

}  // namespace fastnoise
