"""The dispatch table (fastnoise/ops/_dispatch.py): one row per kernel; a backend without a kernel raises a
clear error, never falls back; the harness and the backend lists derive from it."""
import pytest
import torch

import fastnoise
from fastnoise._backend import BACKENDS
from fastnoise.ops import _dispatch
from fastnoise.ops._dispatch import NATIVE, TABLE, TORCH, TRITON, implemented_backends, kernel

_lib = torch.library.Library("fastnoise_kernels", "FRAGMENT")
_lib.define("_dispatch_test_only(Tensor x) -> Tensor")  # schema only: no CPU / CUDA kernel


@pytest.fixture
def rows(monkeypatch):
    """Temporary rows of the table (as the lead adds a family at merge: one line each)."""
    def add(family, name, cpu, triton, cuda):
        monkeypatch.setitem(TABLE, (family, name), (cpu, triton, cuda))
        for b in BACKENDS:
            _dispatch._cache.pop((family, name, b), None)
    yield add


def test_every_row_resolves_on_cpu_backends():
    for (family, name), row in TABLE.items():
        assert callable(kernel(family, name, "reference")), (family, name)
        assert callable(kernel(family, name, "cpu")), (family, name)  # every kernel has a CPU implementation
        if row[1] is not None:
            assert callable(kernel(family, name, "triton")), (family, name)


def test_missing_backend_is_not_implemented(rows):
    rows("toy_family", "toy_kernel", NATIVE, None, None)
    with pytest.raises(fastnoise.BackendUnavailableError, match=r"'toy_family' op family has no 'triton' kernel for 'toy_kernel' \(not implemented yet\); "
                             r"backends that implement it: reference, cpu$"):
        kernel("toy_family", "toy_kernel", "triton")
    assert implemented_backends("toy_family") == ("reference", "cpu")


def test_native_row_without_a_registered_kernel_says_stale_build(rows):
    rows("toy_family", "_dispatch_test_only", NATIVE, None, None)
    with pytest.raises(fastnoise.BackendUnavailableError, match="registers none for CPU: the build is stale"):
        kernel("toy_family", "_dispatch_test_only", "cpu")


def test_unknown_kernel_and_backend():
    with pytest.raises(KeyError, match="not in the dispatch table"):
        kernel("no_such_family", "op", "triton")
    with pytest.raises(ValueError, match="unknown backend"):
        kernel("sampled", "sampled_linear", "tpu")


def test_torch_column_is_the_reference_implementation():
    import fastnoise.reference.ternary_projection as ref
    assert TABLE[("ternary_projection", "ternary_conv_epilogue")] == (NATIVE, TORCH, TORCH)
    assert kernel("ternary_projection", "ternary_conv_epilogue", "triton") is ref.ternary_conv_epilogue
    assert kernel("sampled", "sampled_linear", "triton") is not kernel("sampled", "sampled_linear", "reference")
    assert TABLE[("sampled", "sampled_linear")][1] == TRITON


def test_conformance_lists_come_from_the_table(rows):
    import conformance
    rows("toy_family", "toy_kernel", NATIVE, None, NATIVE)
    spec = conformance.Spec(name="toy", family="toy_family", fn=None, make=None, shapes=[(1,)])
    assert spec.backends == ("reference", "cpu", "cuda")
    assert conformance.backends_on("cpu", "toy_family") == ["reference", "cpu"]
    assert [p.id for p in conformance.backend_device_params("toy_family")] == ["reference-cpu", "reference-cuda",
                                                                                "cpu-cpu", "cuda-cuda"]
    with pytest.raises(ValueError, match="family .* is required"):
        conformance.Spec(name="toy", fn=None, make=None, shapes=[(1,)])
