"""fastnoise.ops.noise_sal (x + delta * exp((x * w + b) / 2), SAL) in the conformance harness."""
import torch

from conformance import Spec, install
from fastnoise.ops import noise_sal
from noise_specs import SHAPES, _bad_common, _op_call, _per_channel, _state_kw


def sal_fn(backend, x, w, b, state=None):
    return noise_sal(x, w, b, backend=backend, **_state_kw(state))


def sal_make(shape, dtype, device, gen):
    return {"x": torch.rand(shape, generator=gen, dtype=dtype).to(device),
            "w": (0.5 * torch.randn(shape[1:], generator=gen, dtype=dtype)).to(device),
            "b": (-2 + 0.5 * torch.randn(_per_channel(shape), generator=gen, dtype=dtype)).to(device)}


SAL_SPEC = Spec(
    name="noise_sal", family="noise", fn=sal_fn, make=sal_make, shapes=SHAPES, grad_inputs=("x", "w", "b"),
    op_call=_op_call("noise_sal", ["w", "b"]), noncontig_inputs=("x", "w"),
    bad_inputs=_bad_common("w") + [
        ("b-dtype", lambda i: {**i, "b": i["b"].double()}, TypeError, "b must have the dtype of x"),
        ("w-shape", lambda i: {**i, "w": torch.ones(2, 2)}, ValueError, r"w must broadcast to x.shape\[1:\]"),
        ("b-nan-float", lambda i: {**i, "b": float("nan")}, ValueError, "b must be a finite number"),
    ])


install(globals(), [SAL_SPEC])
