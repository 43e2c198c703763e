"""mask_select: the selection of mask_blend alone (mask only), conformance of every backend, and equality
with mask_blend's mask on the same scores (ties, NaN, N:M, dims)."""
import pytest
import torch

from conformance import Spec, backend_device_params, install
from conformance import bad_inputs as bad
from fastnoise.ops import mask_blend, mask_select
from fastnoise.ops.mask_blend import keep_count


def _make(shape, dtype, device, gen):
    return {"scores": torch.randn(shape, generator=gen, dtype=dtype).to(device), "dim": 1 if len(shape) == 4 else -1}


def _spec(name, shapes, **kw):
    score = kw.pop("score", "abs")

    def fn(backend, scores, dim):
        return mask_select(scores, dim=dim, score=score, backend=backend, **kw)

    def op_call(inputs, backend):
        za, dim = inputs["scores"], inputs["dim"] % inputs["scores"].dim()
        keep, n, m = (keep_count(kw["ratio"], za.shape[dim]), 0, 0) if "ratio" in kw else (0, *kw["nm"])
        return torch.ops.fastnoise.mask_select.default, (za, keep, n, m, score == "signed", dim, backend)

    bad_inputs = [
        ("int-dtype", bad(scores=lambda i: i["scores"].long()), TypeError, r"scores must be a floating"),
        ("dim-range", bad(dim=5), ValueError, r"dim must be an int in"),
        ("not-tensor", bad(scores=[1.0, 2.0]), TypeError, r"scores must be a torch.Tensor"),
    ]
    return Spec(name=name, family="mask_blend", kernels=("mask_select",), fn=fn, make=_make, shapes=shapes,
                exact_outputs=(0,), gradcheck=False, op_call=op_call, bad_inputs=bad_inputs,
                noncontig_inputs=("scores",))


SPECS = [
    _spec("select-topk-r0.9", [(7, 33), (5, 1), (0, 16), (2, 8, 3, 5)], ratio=0.9),
    _spec("select-nm-2:4-signed", [(7, 32), (0, 8), (2, 8, 3, 5)], nm=(2, 4), score="signed"),
]
install(globals(), SPECS)


@pytest.mark.parametrize("backend,device", backend_device_params("mask_blend"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_mask_select_is_mask_blends_mask(backend, device, dtype):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 16, 3, 2, generator=gen).to(device, dtype)
    za = torch.randn(6, 16, 3, 2, generator=gen).round(decimals=1).to(device, dtype)  # many ties
    za[0, 3, 0, 0] = float("nan")
    za[1, :4, 1, 1] = -0.0
    for kw in (dict(ratio=0.75), dict(ratio=0.0), dict(nm=(1, 4)), dict(ratio=0.5, score="signed")):
        for dim in (1, -1, 0):
            if "nm" in kw and za.shape[dim] % kw["nm"][1]:
                continue
            expect = mask_blend(z, za, dim=dim, backend=backend, **kw)[1]
            got = mask_select(za, dim=dim, backend=backend, **kw)
            assert got.dtype == torch.bool and got.is_contiguous()
            assert torch.equal(got, expect), (kw, dim)


def test_mask_select_takes_no_gradient_and_accepts_grad_inputs():
    za = torch.randn(4, 10, requires_grad=True)
    m = mask_select(za, ratio=0.5)
    assert not m.requires_grad and m.sum(1).tolist() == [5] * 4
