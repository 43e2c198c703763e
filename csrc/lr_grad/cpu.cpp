// CPU kernels of the likelihood-ratio gradient estimator (math and row layout: fastnoise/ops/lr_grad.py;
// seed 002 Eq. 1, 3, 8), of the spike bit packing, and of the noisy LIF forward (lif_noise, Eq. 7).
//
// lr_grad work split: tasks = (block of output neurons) x (range of input rows). A task regenerates the
// noise of its neurons for the noise rows of its input rows (each normal is made once, by the vectorized
// Box-Muller of normal_cpu.h that the forward's noise_add uses: bit-identical), reduces it to
//   E[q, n] = sum over the noise rows r of input row q of L_r f(eps[r, n])     (f = eps, or sign for NIT-S)
// (repeat > 1: the replicas sharing an input row are summed before the GEMM), packs the chunk's input rows
// into a 64-byte aligned tile (any input dtype; packed bits unpacked; sgn for NIT-S; zero padded to whole
// register tiles) and accumulates G[n, :] += E[q, n] X[q, :] with register tiles of kRI neurons x kNC
// vectors (the X column of a tile stays in L1 across the neuron tiles). Tasks of different row ranges
// write their own partial G, added in range order (deterministic for a given thread count); the bias and
// sigma sums accumulate in double.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "lr_grad/args.h"
#include "noise/noise_math.h"
#include "normal_cpu.h"
#include "simd.h"

namespace fastnoise {
namespace {

constexpr int kRI = 6;  // neurons per register tile
#if defined(__AVX512F__)
constexpr int kNC = 2;  // vectors of inputs per register tile (12 of 32 zmm accumulators)
#else
constexpr int kNC = 1;  // 12 of 16 ymm accumulators (a 512-bit Vec is two ymm)
#endif
constexpr int64_t kNormBuf = 1024;  // normals per fill when whole rows are generated

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// G[r * ldg + l] += sum_q E[q * lde + r] * X[q * ldx + l], r < RI, l < NC * VW (only l < kvalid is written).
template <typename T, int RI, int NC>
inline void gemm_tile(const T* E, int64_t lde, const T* X, int64_t ldx, int64_t rq, T* G, int64_t ldg,
                      int64_t kvalid) {
  using V = typename Vec<T>::type;
  constexpr int VW = kVW<T>;
  V acc[RI][NC];
#pragma GCC unroll 8
  for (int r = 0; r < RI; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = V{};
  for (int64_t q = 0; q < rq; ++q) {
    V xv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) xv[c] = vload(X + q * ldx + c * VW);
    const T* e = E + q * lde;
#pragma GCC unroll 8
    for (int r = 0; r < RI; ++r) {
      const T er = e[r];
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] += er * xv[c];
    }
  }
  if (kvalid >= NC * VW) {
#pragma GCC unroll 8
    for (int r = 0; r < RI; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        T* g = G + r * ldg + c * VW;
        vstore(g, vload(g) + acc[r][c]);
      }
  } else {
    for (int r = 0; r < RI; ++r)
      for (int64_t l = 0; l < kvalid; ++l) G[r * ldg + l] += acc[r][l / VW][l % VW];
  }
}

template <typename T>
inline void gemm_rows(int ri, const T* E, int64_t lde, const T* X, int64_t ldx, int64_t rq, T* G, int64_t ldg,
                      int64_t kvalid) {
  switch (ri) {
    case 6: gemm_tile<T, 6, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
    case 5: gemm_tile<T, 5, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
    case 4: gemm_tile<T, 4, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
    case 3: gemm_tile<T, 3, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
    case 2: gemm_tile<T, 2, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
    default: gemm_tile<T, 1, kNC>(E, lde, X, ldx, rq, G, ldg, kvalid); break;
  }
}

// G[nbl, K] (row stride K) += E[rq, nbl]^T (row stride lde) X[rq, Kp] (zero padded past K).
template <typename T>
void gemm_chunk(const T* E, int64_t lde, int64_t nbl, const T* X, int64_t Kp, int64_t K, int64_t rq, T* G) {
  constexpr int64_t KT = kNC * kVW<T>;
  for (int64_t k0 = 0; k0 < K; k0 += KT) {
    const int64_t kv = std::min<int64_t>(KT, K - k0);
    for (int64_t i0 = 0; i0 < nbl; i0 += kRI)
      gemm_rows<T>(static_cast<int>(std::min<int64_t>(kRI, nbl - i0)), E + i0, lde, X + k0, Kp, rq, G + i0 * K + k0,
                   K, kv);
  }
}

// Input rows [q0, q0 + rq) as a T tile [rq, Kp] (sgn(x) for NIT-S), zero padded past K.
template <typename T, typename S>
void pack_float_rows(const S* x, int64_t K, int64_t q0, int64_t rq, bool sign, int64_t Kp, T* out) {
  for (int64_t q = 0; q < rq; ++q) {
    const S* src = x + (q0 + q) * K;
    T* d = out + q * Kp;
    if (sign) {
      for (int64_t k = 0; k < K; ++k) {
        const T v = static_cast<T>(src[k]);
        d[k] = v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
      }
    } else {
      for (int64_t k = 0; k < K; ++k) d[k] = static_cast<T>(src[k]);
    }
    std::fill(d + K, d + Kp, T(0));
  }
}

template <typename T>
void pack_bit_rows(const int32_t* x, int64_t W, int64_t K, int64_t q0, int64_t rq, int64_t Kp, T* out) {
  for (int64_t q = 0; q < rq; ++q) {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(x + (q0 + q) * W);
    T* d = out + q * Kp;
    for (int64_t k = 0; k < K; ++k) d[k] = static_cast<T>((src[k >> 5] >> (k & 31)) & 1u);
    std::fill(d + K, d + Kp, T(0));
  }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> lr_grad_impl(const at::Tensor& x, const at::Tensor& losses_,
                                                            const at::Tensor& sigma_, const RngState& st,
                                                            const LRShape& s, bool sign) {
  const at::Tensor losses = losses_.contiguous(), sigma = sigma_.contiguous();
  const auto opt = sigma.options();
  at::Tensor gw = at::zeros({s.N, s.K}, opt), gb = at::zeros({s.N}, opt), gs = at::zeros({s.N}, opt);
  if (s.rows == 0 || s.N == 0) return {gw, gb, gs};
  const int64_t N = s.N, K = s.K, Rx = s.Rx, M = s.M, repeat = s.repeat;
  const int64_t KT = kNC * kVW<T>, Kp = round_up(K, KT);
  const int64_t nth = std::max<int64_t>(1, at::get_num_threads());
  // neuron blocks: <= 256 neurons (the E tile stays in L2), as many blocks as threads while each keeps >= 48
  int64_t n_blocks = std::max<int64_t>((N + 255) / 256, std::min<int64_t>(nth, (N + 47) / 48));
  const int64_t nb = std::min(N, round_up((N + n_blocks - 1) / n_blocks, kRI));
  n_blocks = (N + nb - 1) / nb;
  // input rows per chunk: the X tile <= 192 KiB and the E tile <= 128 KiB
  const int64_t ts = static_cast<int64_t>(sizeof(T));
  int64_t rc = std::min<int64_t>(196608 / std::max<int64_t>(1, Kp * ts), 131072 / (nb * ts));
  rc = std::min(std::max<int64_t>(rc, 8), std::min<int64_t>(256, Rx));
  const int64_t chunks = (Rx + rc - 1) / rc;
  int64_t splits = std::min(std::max<int64_t>((nth + n_blocks - 1) / n_blocks, 1), chunks);
  const int64_t cps = (chunks + splits - 1) / splits;  // chunks per row range
  splits = (chunks + cps - 1) / cps;
  std::vector<at::Tensor> parts(static_cast<size_t>(splits));
  parts[0] = gw;
  for (int64_t p = 1; p < splits; ++p) parts[p] = at::zeros({N, K}, opt);
  std::vector<double> pb(static_cast<size_t>(splits * N), 0.0), ps(static_cast<size_t>(splits * N), 0.0);
  const T* L = losses.data_ptr<T>();
  const bool full = nb == N;  // one block holds whole rows: several rows per normal fill
  const int64_t rpf = full ? std::max<int64_t>(1, kNormBuf / N) : 1;
  const int64_t epsn = full ? rpf * N : nb;
  const int64_t W = s.bits ? (K + 31) / 32 : 0;

  at::parallel_for(0, n_blocks * splits, 1, [&](int64_t t0, int64_t t1) {
    VecBuffer<T> E(rc * nb), X(rc * Kp);
    std::vector<float> eps(static_cast<size_t>(epsn));
    std::vector<double> ab(static_cast<size_t>(nb)), as(static_cast<size_t>(nb));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t blk = task % n_blocks, sp = task / n_blocks;
      const int64_t n0 = blk * nb, nbl = std::min(nb, N - n0);
      const int64_t c0 = sp * cps, c1 = std::min(chunks, c0 + cps);
      T* G = parts[sp].data_ptr<T>() + n0 * K;
      std::fill(ab.begin(), ab.end(), 0.0);
      std::fill(as.begin(), as.end(), 0.0);
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t q0 = ch * rc, rq = std::min(rc, Rx - q0);
        std::fill(E.data(), E.data() + rq * nb, T(0));
        for (int64_t j = 0; j < s.J; ++j) {
          const int64_t ra = (j * Rx + q0) * repeat, rb = (j * Rx + q0 + rq) * repeat;
          for (int64_t r0 = ra; r0 < rb; r0 += rpf) {
            const int64_t m = std::min(rpf, rb - r0);
            if (full) fill_normals_cpu(st.seed, st.offset, r0 * N, (r0 + m) * N, eps.data());
            else fill_normals_cpu(st.seed, st.offset, r0 * N + n0, r0 * N + n0 + nbl, eps.data());
            for (int64_t i = 0; i < m; ++i) {
              const int64_t r = r0 + i;
              const float* e = eps.data() + i * N * full;
              const T w = L[r % M];
              T* Eq = E.data() + (r / repeat - j * Rx - q0) * nb;
              for (int64_t n = 0; n < nbl; ++n) {
                const T v = static_cast<T>(e[n]);
                const T f = sign ? (v >= T(0) ? w : -w) : w * v;
                Eq[n] += f;
                ab[n] += f;
                as[n] += w * (v * v - T(1));
              }
            }
          }
        }
        if (K == 0) continue;
        if (s.bits) pack_bit_rows<T>(x.data_ptr<int32_t>(), W, K, q0, rq, Kp, X.data());
        else
          AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lr_grad_pack", [&] {
            pack_float_rows<T>(x.data_ptr<scalar_t>(), K, q0, rq, sign, Kp, X.data());
          });
        gemm_chunk<T>(E.data(), nb, nbl, X.data(), Kp, K, rq, G);
      }
      std::copy(ab.begin(), ab.begin() + nbl, pb.begin() + sp * N + n0);
      std::copy(as.begin(), as.begin() + nbl, ps.begin() + sp * N + n0);
    }
  });
  for (int64_t p = 1; p < splits; ++p) gw.add_(parts[p]);  // range order
  const T* sg = sigma.data_ptr<T>();
  T* bp = gb.data_ptr<T>();
  T* sp_ = gs.data_ptr<T>();
  for (int64_t n = 0; n < N; ++n) {
    double b = 0.0, v = 0.0;
    for (int64_t p = 0; p < splits; ++p) {
      b += pb[p * N + n];
      v += ps[p * N + n];
    }
    bp[n] = sign ? static_cast<T>(b) : static_cast<T>(b) / sg[n];
    sp_[n] = static_cast<T>(v) / sg[n];
  }
  if (!sign && K > 0) gw.div_(sigma.unsqueeze(1));
  return {gw, gb, gs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lr_grad_cpu(const at::Tensor& x_, const at::Tensor& losses,
                                                           const at::Tensor& sigma, const at::Tensor& state,
                                                           int64_t rows, int64_t repeat, int64_t k, bool sign) {
  const LRShape s = lr_check(x_, losses, sigma, rows, repeat, k);
  const RngState st = read_rng_state(state);
  const at::Tensor x = x_.contiguous();
  if (lr_math_type(x) == at::kDouble) return lr_grad_impl<double>(x, losses, sigma, st, s, sign);
  return lr_grad_impl<float>(x, losses, sigma, st, s, sign);
}

// int32 [R, ceil(K/32)]: bit j of word w = (x[r, 32w + j] != 0); every value must be 0 or 1 (ValueError).
at::Tensor lr_pack_bits_cpu(const at::Tensor& x_) {
  TORCH_CHECK(x_.dim() == 2 && at::isFloatingType(x_.scalar_type()), "x must be a 2-D floating tensor, got ",
              x_.scalar_type(), " ", x_.sizes());
  const at::Tensor x = x_.contiguous();
  const int64_t R = x.size(0), K = x.size(1), W = (K + 31) / 32;
  at::Tensor out = at::empty({R, W}, x.options().dtype(at::kInt));
  if (R == 0 || W == 0) return out;
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lr_pack_bits", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    int32_t* op = out.data_ptr<int32_t>();
    at::parallel_for(0, R, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      bool b = false;
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* src = xp + r * K;
        for (int64_t w = 0; w < W; ++w) {
          const int64_t kk = std::min<int64_t>(32, K - 32 * w);
          uint32_t word = 0;
          for (int64_t j = 0; j < kk; ++j) {
            const float v = static_cast<float>(src[32 * w + j]);
            b |= (v != 0.0f) & (v != 1.0f);
            word |= static_cast<uint32_t>(v != 0.0f) << j;
          }
          op[r * W + w] = static_cast<int32_t>(word);
        }
      }
      if (b) bad = true;
    });
  });
  TORCH_CHECK_VALUE(!bad.load(), "x must be binary (every value 0 or 1) to be packed as spikes");
  return out;
}

// lif_noise: LIF neurons (Eq. 7) fed pre + sigma * eps over T steps, spikes [T, B*C, F]; eps of (t, row, j) is
// normal(offset + (t*B*C + row)*F + j) (noise_add's layout), row = b*C + c. Parallel over rows: each row runs
// its T steps with the membrane u and the leak factor keep = decay * (1 - s) in aligned row buffers.
template <typename S, typename A>
void lif_rows(const S* pre, int64_t Sx, int64_t B, int64_t F, int64_t T, int64_t C, const A* sigma, int64_t inner,
              A decay, A th, const RngState& st, S* out) {
  const int64_t R = B * C;
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, T * F)), [&](int64_t r0, int64_t r1) {
    VecBuffer<A> u(F), keep(F), sig(F);
    std::vector<float> eps(static_cast<size_t>(std::max<int64_t>(F, 1)));
    for (int64_t j = 0; j < F; ++j) sig[j] = sigma[j / inner];
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / C;
      std::fill(u.data(), u.data() + F, A(0));
      std::fill(keep.data(), keep.data() + F, decay);
      for (int64_t t = 0; t < T; ++t) {
        const S* p = pre + ((Sx > 1 ? t : 0) * B + b) * F;
        const int64_t g0 = (t * R + row) * F;
        fill_normals_cpu(st.seed, st.offset, g0, g0 + F, eps.data());
        S* o = out + g0;
        for (int64_t j = 0; j < F; ++j) {
          const A v = noise_forward_elem<kNoiseAdd, A>(static_cast<A>(p[j]), sig[j], A(0), static_cast<A>(eps[j]));
          const A uu = u[j] * keep[j] + v;
          const bool spk = uu > th;
          u[j] = uu;
          keep[j] = spk ? A(0) : decay;
          o[j] = static_cast<S>(spk ? 1.0f : 0.0f);
        }
      }
    }
  });
}

at::Tensor lif_noise_cpu(const at::Tensor& pre_, const at::Tensor& sigma_, const at::Tensor& state, int64_t T,
                         int64_t C, int64_t inner, double decay, double threshold) {
  const LIFShape s = lif_check(pre_, sigma_, T, C, inner);
  const RngState st = read_rng_state(state);
  const at::Tensor pre = pre_.contiguous(), sigma = sigma_.contiguous();
  at::Tensor out = at::empty({T, s.B * C, s.F}, pre.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pre.scalar_type(), "lif_noise", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    lif_rows<scalar_t, A>(pre.data_ptr<scalar_t>(), s.S, s.B, s.F, T, C, sigma.data_ptr<A>(), inner,
                          static_cast<A>(decay), static_cast<A>(threshold), st, out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("lr_grad", &fastnoise::lr_grad_cpu);
  m.impl("lr_pack_bits", &fastnoise::lr_pack_bits_cpu);
  m.impl("lif_noise", &fastnoise::lif_noise_cpu);
}
