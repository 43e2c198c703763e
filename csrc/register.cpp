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
  // sampled (NENNI exact part): outputs only where mask / keep is True, 0 elsewhere.
  // linear: x [R, K], weight [N, K], mask [R, N]; conv: x [B, C, H, W], weight [n, C/groups, kh, kw],
  // mask [B, n, H', W'] (position) or keep [B, n] (channel). Backward: (grad_x, grad_weight, grad_bias);
  // the conv backward serves both granularities (mask [B, n, H', W'] or [B, n, 1, 1]).
  m.def("sampled_linear(Tensor x, Tensor weight, Tensor? bias, Tensor mask) -> Tensor");
  m.def("sampled_linear_backward(Tensor grad, Tensor x, Tensor weight, Tensor mask) -> (Tensor, Tensor, Tensor)");
  m.def("sampled_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor mask, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("channel_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor keep, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("sampled_conv2d_backward(Tensor grad, Tensor x, Tensor weight, Tensor mask, int[] stride, "
        "int[] padding, int[] dilation, int groups) -> (Tensor, Tensor, Tensor)");
}
