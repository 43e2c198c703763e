// Schemas of the kernel ops: namespace `fastnoise_kernels`, one device kernel each (CPU in
// csrc/<op>/cpu.cpp, CUDA in csrc/<op>/cuda_glue.cpp + cuda.cu). The public, differentiable,
// backend-selecting ops live in Python as `fastnoise::<op>` (fastnoise/ops/) and call these.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import fastnoise._C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "fastnoise C++ kernels", -1, nullptr};
  return PyModule_Create(&def);
}
}

TORCH_LIBRARY(fastnoise_kernels, m) {
  // rng: state = int64[2] (seed, offset); kind 0 raw (int64 out), 1 uniform, 2 normal (float32 out)
  m.def("philox(Tensor state, int count, int kind) -> Tensor");
  // the normals of given Philox blocks: words int64 [n, 4] -> float32 [n, 4] (tests of the transform)
  m.def("box_muller(Tensor words) -> Tensor");
  // noise: op 0 add, 1 mul, 2 sal (csrc/noise/noise_math.h); a, b = 1-D params in the math type
  // (float32, float64 for float64 x), element i uses a[(i / inner_a) % a.numel()]; b may be empty.
  // backward: need = bits 1 grad_x, 2 grad_a, 4 grad_b; grad_a / grad_b are the [P] gradients of a / b
  // (per-element terms summed over the broadcast dims).
  m.def("noise_forward(Tensor x, Tensor a, Tensor b, Tensor state, int op, int inner_a, int inner_b) -> Tensor");
  m.def("noise_backward(Tensor grad, Tensor x, Tensor a, Tensor b, Tensor state, int op, int inner_a, "
        "int inner_b, int need) -> (Tensor, Tensor, Tensor)");
  // mask_blend: z, za viewed as [outer, F = size(dim), inner]; keep the top `keep` scores per row
  // (m == 0) or the top n of every m consecutive features (m > 0); score |za| or za (signed_score).
  // Returns (z*mask + za*(1-mask), bool mask). Backward: (grad*mask, grad*(1-mask)).
  m.def("mask_blend(Tensor z, Tensor za, int keep, int n, int m, bool signed_score, int dim) -> (Tensor, Tensor)");
  m.def("mask_blend_backward(Tensor grad, Tensor mask) -> (Tensor, Tensor)");
  // mask_select: the selection of mask_blend alone (the bool mask it would return for z_approx = za)
  m.def("mask_select(Tensor za, int keep, int n, int m, bool signed_score, int dim) -> Tensor");
  // ternary_projection (NENNI): packed P = int32 [2, k, ceil(d/32)] (+1 / -1 bitmasks, see
  // csrc/ternary_projection/ternary.h); state = int64[2] (seed, offset)
  m.def("ternary_generate(Tensor state, int k, int d) -> Tensor");
  m.def("ternary_project(Tensor x, Tensor packed, float scale) -> Tensor");
  m.def("ternary_project_t(Tensor g, Tensor packed, int d, float scale) -> Tensor");
  m.def("ternary_conv_project(Tensor x, Tensor packed, float scale, int kh, int kw, int sh, int sw, int ph, "
        "int pw, int dh, int dw, int groups) -> Tensor");
  // the 1x1 grouped map of the conv approximation: y [B, groups*k, Ho, Wo], w [n, k] (float; INT4 scales
  // folded in), b [n] -> z [B, n, Ho, Wo] = w_g y_g + b_g per group (a CPU kernel; the triton and cuda
  // backends run the reference's torch GEMM, cuBLAS: fastnoise/ops/_dispatch.py)
  m.def("ternary_conv_epilogue(Tensor y, Tensor w, Tensor? b, int groups) -> Tensor");
  // the same and the pooled channel score of z: score [B, n] = mean over Ho, Wo of |z| (signed_score: of z),
  // summed in the epilogue while each row is in cache (NENNI channel granularity; CPU kernel, others: reference)
  m.def("ternary_conv_epilogue_pooled(Tensor y, Tensor w, Tensor? b, int groups, bool signed_score) "
        "-> (Tensor, Tensor)");
  // sampled (NENNI exact part): outputs only where mask / keep is True, 0 elsewhere.
  // linear: x [R, K], weight [N, K], mask [R, N]; conv: x [B, C, H, W], weight [n, C/groups, kh, kw],
  // mask [B, n, H', W'] (position) or keep [B, n] (channel). Backward: (grad_x, grad_weight, grad_bias);
  // the conv backward serves both granularities (mask [B, n, H', W'] or [B, n, 1, 1]).
  // lr_grad (NIT, seed 002; layout in fastnoise/ops/lr_grad.py): x [Rx, K] floating or packed bits int32
  // [Rx, ceil(k/32)]; noise row r < rows uses eps = normal(offset + r*N + n), losses[r % M], x row
  // (r / repeat) % Rx. Returns (G_weight [N, k], G_bias [N], G_sigma [N]) in the math type; sign: NIT-S.
  m.def("lr_grad(Tensor x, Tensor losses, Tensor sigma, Tensor state, int rows, int repeat, int k, bool sign) "
        "-> (Tensor, Tensor, Tensor)");
  // binary x [R, K] -> int32 [R, ceil(K/32)], bit j of word w = (x[r, 32w + j] != 0)
  m.def("lr_pack_bits(Tensor x) -> Tensor");
  // LIF neurons (seed Eq. 7) fed pre + sigma * eps: pre [S, B, F] (S = 1 or steps), sigma [F / inner];
  // eps of (t, b*C + c, j) = normal(offset + ((t*B + b)*C + c)*F + j) (noise_add's layout) -> spikes [T, B*C, F]
  m.def("lif_noise(Tensor pre, Tensor sigma, Tensor state, int steps, int replicas, int inner, float decay, "
        "float threshold) -> Tensor");
  m.def("sampled_linear(Tensor x, Tensor weight, Tensor? bias, Tensor mask) -> Tensor");
  m.def("sampled_linear_backward(Tensor grad, Tensor x, Tensor weight, Tensor mask) -> (Tensor, Tensor, Tensor)");
  m.def("sampled_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor mask, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("channel_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor keep, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  // in place: out[b, j] = channel_conv2d(...)[b, j] where keep[b, j], other planes of out untouched (NENNI
  // writes the kept channels into z~; a CPU kernel, the triton and cuda backends run the reference)
  m.def("channel_conv2d_into(Tensor x, Tensor weight, Tensor? bias, Tensor keep, Tensor(a!) out, int[] stride, "
        "int[] padding, int[] dilation, int groups) -> ()");
  m.def("sampled_conv2d_backward(Tensor grad, Tensor x, Tensor weight, Tensor mask, int[] stride, "
        "int[] padding, int[] dilation, int groups) -> (Tensor, Tensor, Tensor)");
  // noise_conv: conv2d with reparameterized noise on the input, weight and output (csrc/noise_conv/config.h:
  // cfg[12] = site modes, parameter inners, shared / std flags; scales[3] = input, weight, output scale).
  // Returns (y [B, N, Ho, Wo] contiguous, stats = the site amplitudes s [3], saved for the backward).
  // backward: need bits 1 x, 2 weight, 4 bias, 8 in_a, 16 in_b, 32 w_alpha, 64 out_sigma; parameter
  // gradients are the [P] gradients of the flat parameters.
  m.def("noise_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor in_a, Tensor in_b, Tensor w_alpha, "
        "Tensor? w_mask, Tensor out_sigma, Tensor state, int[] stride, int[] padding, int[] dilation, int groups, "
        "int[] cfg, float[] scales) -> (Tensor, Tensor)");
  m.def("noise_conv2d_backward(Tensor grad, Tensor x, Tensor weight, Tensor in_a, Tensor in_b, Tensor w_alpha, "
        "Tensor? w_mask, Tensor out_sigma, Tensor state, Tensor stats, int[] stride, int[] padding, "
        "int[] dilation, int groups, int[] cfg, int need) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
