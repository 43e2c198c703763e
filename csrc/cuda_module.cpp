// `import fastnoise._C_cuda` loads the CUDA kernels, whose registrations run at load time.
#include <Python.h>

extern "C" {
PyObject* PyInit__C_cuda(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C_cuda", "fastnoise CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
}
