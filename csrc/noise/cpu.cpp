// CPU kernels of the noise ops (add / mul / sal, see noise_math.h): the Philox normals of a chunk are
// generated into a small buffer (block-of-4 pattern of csrc/philox.h), then the elementwise math runs
// over the chunk: per run of constant parameters with the values as scalars (scalar or per-channel
// parameters: no gather), else with the parameters gathered per element. The backward regenerates the
// same normals bit for bit.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.h"
#include "noise/args.h"
#include "noise/noise_math.h"
#include "normal_cpu.h"
#include "philox.h"

namespace fastnoise {
namespace {

constexpr int64_t kChunk = 1024;

// normals of elements [begin, end) of the stream (seed, offset) into out[0 .. end-begin)
inline void fill_normals(const RngState& st, int64_t begin, int64_t end, float* out) {
  fill_normals_cpu(st.seed, st.offset, begin, end, out);
}

// the parameter values of elements [begin, begin + n) into out (advancing `it`), by runs
template <typename A>
inline void gather_param(const A* p, ParamIter& it, int64_t n, A* out) {
  if (it.P == 1) {
    std::fill(out, out + n, p[0]);
    return;
  }
  int64_t k = 0;
  while (k < n) {
    if (it.inner == 1) {  // a contiguous run of parameters
      const int64_t len = std::min(n - k, it.P - it.p);
      std::copy(p + it.p, p + it.p + len, out + k);
      k += len;
      it.p += len;
      if (it.p == it.P) it.p = 0;
    } else {  // a run of one value
      const int64_t len = std::min(n - k, it.inner - it.r);
      std::fill(out + k, out + k + len, p[it.p]);
      k += len;
      it.r += len;
      if (it.r == it.inner) {
        it.r = 0;
        if (++it.p == it.P) it.p = 0;
      }
    }
  }
}

// Shared elementwise driver state of one parallel_for range: normals and parameter values per chunk.
template <typename A>
struct ChunkGen {
  const RngState& st;
  const A* pa;
  const A* pb;
  ParamIter ia, ib;
  float d[kChunk];
  A av[kChunk], bv[kChunk];
  ChunkGen(const RngState& s, const NoiseParam& a, const NoiseParam& b, int64_t begin)
      : st(s), pa(a.t.data_ptr<A>()), pb(b.t.data_ptr<A>()), ia(begin, a.inner, a.P), ib(begin, b.inner, b.P) {}
  // fills d, av, bv for elements [c0, c0 + m) (chunks must be visited in order)
  void next(int64_t c0, int64_t m) {
    fill_normals(st, c0, c0 + m, d);
    gather_param(pa, ia, m, av);
    gather_param(pb, ib, m, bv);
  }
};

// Sum of per-element terms t[0 .. m) into acc[P] following the parameter index of `it` (advanced).
template <typename A>
inline void accumulate(const A* t, ParamIter& it, int64_t m, double* acc) {
  if (it.P == 1) {
    A s = 0;
    for (int64_t k = 0; k < m; ++k) s += t[k];
    acc[0] += s;
    return;
  }
  int64_t k = 0;
  while (k < m) {
    if (it.inner == 1) {
      const int64_t len = std::min(m - k, it.P - it.p);
      double* a = acc + it.p;
      for (int64_t j = 0; j < len; ++j) a[j] += t[k + j];
      k += len;
      it.p += len;
      if (it.p == it.P) it.p = 0;
    } else {
      const int64_t len = std::min(m - k, it.inner - it.r);
      A s = 0;
      for (int64_t j = 0; j < len; ++j) s += t[k + j];
      acc[it.p] += s;
      k += len;
      it.r += len;
      if (it.r == it.inner) {
        it.r = 0;
        if (++it.p == it.P) it.p = 0;
      }
    }
  }
}

// How the gradient of one parameter is formed: not needed, written per element (P == n: it is the
// gradient), accumulated per parallel range into [P] partials (merged in range order: deterministic),
// or per element then summed (P too large for per-range partials).
enum class GradMode { kNone, kDirect, kAccumulate, kElements };

inline GradMode grad_mode(bool needed, const NoiseParam& p, int64_t n) {
  if (!needed) return GradMode::kNone;
  if (p.P == n && p.inner == 1) return GradMode::kDirect;
  if (p.P * std::max<int64_t>(at::get_num_threads(), 1) * 2 <= n) return GradMode::kAccumulate;
  return GradMode::kElements;
}

// Elements left in the current run of one parameter value (a scalar parameter is one endless run).
inline int64_t run_left(const ParamIter& it) { return it.P == 1 ? INT64_MAX : it.inner - it.r; }

// Advance `it` by len elements inside its current run (len <= run_left(it)).
inline void run_advance(ParamIter& it, int64_t len) {
  if (it.P == 1) return;
  it.r += len;
  if (it.r == it.inner) {
    it.r = 0;
    if (++it.p == it.P) it.p = 0;
  }
}

// Parameters that stay constant over runs of at least this many elements are read as scalars per run
// (no per-element gather into a buffer): scalar, per-channel [C, 1, 1] of a large enough H*W.
constexpr int64_t kMinRun = 64;
inline bool long_runs(const NoiseParam& p) { return p.P == 1 || p.inner >= kMinRun; }

// y[j] = op(x[j], a, b, d[j]) for j < len, with a, b one value each (kScalar: a run of constant
// parameters) or one per element (gathered buffers). float data in native vectors: GCC does not vectorize
// the scalar loop of sal (its exp), and the vector lanes compute the scalar loop's bits.
template <int OP, bool kScalar, typename A, typename scalar_t>
inline void forward_span(int64_t len, const scalar_t* x, const float* d, const A* a, const A* b, scalar_t* y) {
  int64_t j = 0;
  if constexpr (std::is_same_v<A, float> && std::is_same_v<scalar_t, float>) {
    using V = nat::f32;
    constexpr int L = nat::kLanes;
    const V as = V() + a[0], bs = V() + b[0];
    for (; j + L <= len; j += L)
      nat::store(y + j, noise_forward_elem<OP, V>(nat::load(x + j), kScalar ? as : nat::load(a + j),
                                                  kScalar ? bs : nat::load(b + j), nat::load(d + j)));
  }
  for (; j < len; ++j)
    y[j] = static_cast<scalar_t>(noise_forward_elem<OP, A>(static_cast<A>(x[j]), a[kScalar ? 0 : j],
                                                           b[kScalar ? 0 : j], static_cast<A>(d[j])));
}

template <int OP>
at::Tensor forward_op(const at::Tensor& x_, const NoiseParam& a, const NoiseParam& b, const RngState& st) {
  const at::Tensor x = x_.contiguous();
  at::Tensor y = empty_output(x.sizes(), x.options());
  const int64_t n = x.numel();
  if (n == 0) return y;
  const bool runs = long_runs(a) && long_runs(b);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      if (runs) {  // the normals of a chunk, then one vectorized loop per run of constant (a, b)
        const A* pa = a.t.data_ptr<A>();
        const A* pb = b.t.data_ptr<A>();
        ParamIter ia(begin, a.inner, a.P), ib(begin, b.inner, b.P);
        float d[kChunk];
        for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
          const int64_t m = std::min(kChunk, end - c0);
          fill_normals(st, c0, c0 + m, d);
          for (int64_t k = 0; k < m;) {
            const int64_t len = std::min({m - k, run_left(ia), run_left(ib)});
            forward_span<OP, true>(len, xp + c0 + k, d + k, pa + ia.p, pb + ib.p, yp + c0 + k);
            run_advance(ia, len);
            run_advance(ib, len);
            k += len;
          }
        }
        return;
      }
      ChunkGen<A> gen(st, a, b, begin);
      for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
        const int64_t m = std::min(kChunk, end - c0);
        gen.next(c0, m);
        forward_span<OP, false>(m, xp + c0, gen.d, gen.av, gen.bv, yp + c0);
      }
    });
  });
  return y;
}

// grad terms of one chunk: tx (grad_x), ta, tb (per-element parameter terms); x may be null (add).
template <int OP, typename A, typename scalar_t>
inline void backward_chunk(int64_t m, const A* g, const scalar_t* x, const ChunkGen<A>& gen, A* tx, A* ta, A* tb) {
  int64_t k0 = 0;
  if constexpr (std::is_same_v<A, float> && std::is_same_v<scalar_t, float>) {  // native vectors (exp of sal)
    using V = nat::f32;
    constexpr int L = nat::kLanes;
    for (; k0 + L <= m; k0 += L) {
      V vx, va, vb;
      noise_backward_elem<OP, V>(nat::load(g + k0), x == nullptr ? V() : nat::load(x + k0), nat::load(gen.av + k0),
                                 nat::load(gen.bv + k0), nat::load(gen.d + k0), &vx, &va, &vb);
      nat::store(tx + k0, vx);
      nat::store(ta + k0, va);
      nat::store(tb + k0, vb);
    }
  }
  if (x == nullptr) {
    for (int64_t k = k0; k < m; ++k)
      noise_backward_elem<OP, A>(g[k], A(0), gen.av[k], gen.bv[k], static_cast<A>(gen.d[k]), &tx[k], &ta[k], &tb[k]);
  } else {
    for (int64_t k = k0; k < m; ++k)
      noise_backward_elem<OP, A>(g[k], static_cast<A>(x[k]), gen.av[k], gen.bv[k], static_cast<A>(gen.d[k]), &tx[k],
                                 &ta[k], &tb[k]);
  }
}

template <int OP>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_, const at::Tensor& x_,
                                                           const NoiseParam& a, const NoiseParam& b,
                                                           const RngState& st, int64_t need) {
  const int64_t n = grad_.numel();
  // a broadcast scalar gradient (e.g. of out.sum()) is read as one value, not materialized
  bool g_scalar = n > 0;
  for (int64_t d = 0; d < grad_.dim(); ++d) g_scalar = g_scalar && (grad_.stride(d) == 0 || grad_.size(d) == 1);
  const at::Tensor g = g_scalar ? grad_ : grad_.contiguous();
  const bool uses_x = OP != kNoiseAdd;
  const at::Tensor x = uses_x ? x_.contiguous() : g;
  if (uses_x) {
    TORCH_CHECK(x.sizes() == grad_.sizes(), "x must have the shape of grad, ", grad_.sizes(), ", got ", x.sizes());
    TORCH_CHECK(x.scalar_type() == grad_.scalar_type(), "x must have the dtype of grad");
  }
  const auto mopt = grad_.options().dtype(noise_math_type(grad_.scalar_type()));
  at::Tensor gx = (need & kNeedX) ? empty_output(grad_.sizes(), grad_.options()) : at::empty({0}, grad_.options());
  const GradMode ma = grad_mode(need & kNeedA, a, n), mb = grad_mode(need & kNeedB, b, n);
  auto out_for = [&](GradMode mode, const NoiseParam& p) {
    if (mode == GradMode::kNone) return at::empty({0}, mopt);
    if (mode == GradMode::kElements) return empty_output({n}, mopt);
    return at::empty({p.P}, mopt);  // written in full (direct, or by the merge of the partials)
  };
  at::Tensor ga = out_for(ma, a), gb = out_for(mb, b);
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_.scalar_type(), "noise_backward_cpu", [&] {
      using A = at::opmath_type<scalar_t>;
      const scalar_t* gp = g.data_ptr<scalar_t>();
      const scalar_t* xp = uses_x ? x.data_ptr<scalar_t>() : nullptr;
      scalar_t* gxp = (need & kNeedX) ? gx.data_ptr<scalar_t>() : nullptr;
      A* gap = ma != GradMode::kNone ? ga.data_ptr<A>() : nullptr;
      A* gbp = mb != GradMode::kNone ? gb.data_ptr<A>() : nullptr;
      std::mutex mu;
      std::vector<std::pair<int64_t, std::vector<double>>> parts_a, parts_b;
      at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
        ChunkGen<A> gen(st, a, b, begin);
        ParamIter acc_ia(begin, a.inner, a.P), acc_ib(begin, b.inner, b.P);
        std::vector<double> acc_a(ma == GradMode::kAccumulate ? a.P : 0), acc_b(mb == GradMode::kAccumulate ? b.P : 0);
        A ta[kChunk], tb[kChunk], tx[kChunk], gbuf[kChunk];
        if (g_scalar) std::fill(gbuf, gbuf + kChunk, static_cast<A>(gp[0]));
        for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
          const int64_t m = std::min(kChunk, end - c0);
          gen.next(c0, m);
          // branch-free inner loops (vectorizable): gradient from a buffer, x (if used) from memory
          if (g_scalar) {
            backward_chunk<OP, A>(m, gbuf, xp ? xp + c0 : nullptr, gen, tx, ta, tb);
          } else {
            const scalar_t* gc = gp + c0;
            for (int64_t k = 0; k < m; ++k) gbuf[k] = static_cast<A>(gc[k]);
            backward_chunk<OP, A>(m, gbuf, xp ? xp + c0 : nullptr, gen, tx, ta, tb);
          }
          if (gxp) {
            scalar_t* gxc = gxp + c0;
            for (int64_t k = 0; k < m; ++k) gxc[k] = static_cast<scalar_t>(tx[k]);
          }
          if (ma == GradMode::kAccumulate) accumulate(ta, acc_ia, m, acc_a.data());
          else if (ma != GradMode::kNone) std::copy(ta, ta + m, gap + c0);
          if (mb == GradMode::kAccumulate) accumulate(tb, acc_ib, m, acc_b.data());
          else if (mb != GradMode::kNone) std::copy(tb, tb + m, gbp + c0);
        }
        std::lock_guard<std::mutex> lock(mu);
        if (ma == GradMode::kAccumulate) parts_a.emplace_back(begin, std::move(acc_a));
        if (mb == GradMode::kAccumulate) parts_b.emplace_back(begin, std::move(acc_b));
      });
      auto merge = [](std::vector<std::pair<int64_t, std::vector<double>>>& parts, A* out, int64_t P) {
        std::sort(parts.begin(), parts.end(), [](const auto& l, const auto& r) { return l.first < r.first; });
        std::vector<double> total(P, 0.0);
        for (const auto& pr : parts)
          for (int64_t j = 0; j < P; ++j) total[j] += pr.second[j];
        for (int64_t j = 0; j < P; ++j) out[j] = static_cast<A>(total[j]);
      };
      if (ma == GradMode::kAccumulate) merge(parts_a, gap, a.P);
      if (mb == GradMode::kAccumulate) merge(parts_b, gbp, b.P);
    });
  }
  // per-element terms of a large parameter: sum over the broadcast dims here
  auto finish = [&](at::Tensor t, GradMode mode, const NoiseParam& p) {
    if (mode != GradMode::kElements) return t;
    return t.view({n / (p.P * p.inner), p.P, p.inner}).sum(at::IntArrayRef{0, 2});
  };
  return {gx, finish(ga, ma, a), finish(gb, mb, b)};
}

at::Tensor noise_forward_cpu(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& state,
                             int64_t op, int64_t inner_a, int64_t inner_b) {
  noise_check_op(op, x);
  const NoiseParam pa = noise_param("a", a, inner_a, x), pb = noise_param("b", b, inner_b, x);
  const RngState st = read_rng_state(state);
  if (op == kNoiseAdd) return forward_op<kNoiseAdd>(x, pa, pb, st);
  if (op == kNoiseMul) return forward_op<kNoiseMul>(x, pa, pb, st);
  return forward_op<kNoiseSal>(x, pa, pb, st);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> noise_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                  const at::Tensor& a, const at::Tensor& b,
                                                                  const at::Tensor& state, int64_t op, int64_t inner_a,
                                                                  int64_t inner_b, int64_t need) {
  noise_check_op(op, grad);
  const NoiseParam pa = noise_param("a", a, inner_a, grad), pb = noise_param("b", b, inner_b, grad);
  const RngState st = read_rng_state(state);
  if (op == kNoiseAdd) return backward_op<kNoiseAdd>(grad, x, pa, pb, st, need);
  if (op == kNoiseMul) return backward_op<kNoiseMul>(grad, x, pa, pb, st, need);
  return backward_op<kNoiseSal>(grad, x, pa, pb, st, need);
}

}  // namespace
}  // namespace fastnoise

TORCH_LIBRARY_IMPL(fastnoise_kernels, CPU, m) {
  m.impl("noise_forward", &fastnoise::noise_forward_cpu);
  m.impl("noise_backward", &fastnoise::noise_backward_cpu);
}
