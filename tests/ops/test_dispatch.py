"""`fastnoise.ops._dispatch.kernel`: a backend without a kernel raises a clear error, never falls back."""
import pytest
import torch

import fastnoise
from fastnoise.ops._dispatch import kernel

_lib = torch.library.Library("fastnoise_kernels", "FRAGMENT")
_lib.define("_dispatch_test_only(Tensor x) -> Tensor")  # schema only: no CPU / CUDA kernel


def test_missing_triton_module_is_not_implemented():
    with pytest.raises(fastnoise.BackendUnavailableError, match="'no_such_family' op family has no 'triton' kernel"):
        kernel("no_such_family", "op", "triton")


def test_missing_cpu_kernel_is_not_implemented():
    with pytest.raises(fastnoise.BackendUnavailableError, match="has no 'cpu' kernel \\(not implemented yet\\)"):
        kernel("test_family", "_dispatch_test_only", "cpu")


def test_existing_kernels_resolve():
    assert callable(kernel("sampled", "sampled_linear", "cpu"))
    assert callable(kernel("sampled", "sampled_linear", "triton"))
    with pytest.raises(ValueError, match="unknown backend"):
        kernel("sampled", "sampled_linear", "tpu")
