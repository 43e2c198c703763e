// CPU kernels of the noise ops (add / mul / sal, see noise_math.h): the Philox normals of a chunk are
// generated into a small buffer (block-of-4 pattern of csrc/philox.h), then the elementwise math runs
// over the chunk. The backward regenerates the same normals bit for bit.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

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

// Shared elementwise driver: body(begin, n, d, av, bv) for chunks of at most kChunk elements.
template <typename A, typename Body>
void noise_driver(int64_t n, const RngState& st, const NoiseParam& a, const NoiseParam& b, Body body) {
  const A* pa = a.t.data_ptr<A>();
  const A* pb = b.t.data_ptr<A>();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    float d[kChunk];
    A av[kChunk], bv[kChunk];
    ParamIter ia(begin, a.inner, a.P), ib(begin, b.inner, b.P);
    for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
      const int64_t m = std::min(kChunk, end - c0);
      fill_normals(st, c0, c0 + m, d);
      gather_param(pa, ia, m, av);
      gather_param(pb, ib, m, bv);
      body(c0, m, d, av, bv);
    }
  });
}

template <int OP>
at::Tensor forward_op(const at::Tensor& x_, const NoiseParam& a, const NoiseParam& b, const RngState& st) {
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  const int64_t n = x.numel();
  if (n == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    noise_driver<A>(n, st, a, b, [&](int64_t c0, int64_t m, const float* d, const A* av, const A* bv) {
      const scalar_t* xc = xp + c0;
      scalar_t* yc = yp + c0;
      for (int64_t k = 0; k < m; ++k)
        yc[k] = static_cast<scalar_t>(noise_forward_elem<OP, A>(static_cast<A>(xc[k]), av[k], bv[k], static_cast<A>(d[k])));
    });
  });
  return y;
}

template <int OP>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(const at::Tensor& grad_, const at::Tensor& x_,
                                                           const NoiseParam& a, const NoiseParam& b,
                                                           const RngState& st, int64_t need) {
  const at::Tensor g = grad_.contiguous();
  const bool uses_x = OP != kNoiseAdd;
  const at::Tensor x = uses_x ? x_.contiguous() : g;
  if (uses_x) {
    TORCH_CHECK(x.sizes() == g.sizes(), "x must have the shape of grad, ", g.sizes(), ", got ", x.sizes());
    TORCH_CHECK(x.scalar_type() == g.scalar_type(), "x must have the dtype of grad");
  }
  const int64_t n = g.numel();
  const auto mt = noise_math_type(g.scalar_type());
  at::Tensor gx = (need & kNeedX) ? at::empty(g.sizes(), g.options()) : at::empty({0}, g.options());
  at::Tensor ga = (need & kNeedA) ? at::empty({n}, g.options().dtype(mt)) : at::empty({0}, g.options().dtype(mt));
  at::Tensor gb = (need & kNeedB) ? at::empty({n}, g.options().dtype(mt)) : at::empty({0}, g.options().dtype(mt));
  if (n == 0) return {gx, ga, gb};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "noise_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* gxp = (need & kNeedX) ? gx.data_ptr<scalar_t>() : nullptr;
    A* gap = (need & kNeedA) ? ga.data_ptr<A>() : nullptr;
    A* gbp = (need & kNeedB) ? gb.data_ptr<A>() : nullptr;
    noise_driver<A>(n, st, a, b, [&](int64_t c0, int64_t m, const float* d, const A* av, const A* bv) {
      for (int64_t k = 0; k < m; ++k) {
        const int64_t i = c0 + k;
        A vx, va, vb;
        noise_backward_elem<OP, A>(static_cast<A>(gp[i]), uses_x ? static_cast<A>(xp[i]) : A(0), av[k], bv[k],
                                   static_cast<A>(d[k]), &vx, &va, &vb);
        if (gxp) gxp[i] = static_cast<scalar_t>(vx);
        if (gap) gap[i] = va;
        if (gbp) gbp[i] = vb;
      }
    });
  });
  return {gx, ga, gb};
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
