"""fastnoise.ops.noise_add (x + sigma * delta) in the conformance harness."""
import torch

from conformance import Spec, install
from fastnoise.ops import noise_add
from noise_specs import SHAPES, _bad_common, _bad_sigma, _op_call, _per_channel, _state_kw


def add_fn(backend, x, sigma, state=None):
    return noise_add(x, sigma, backend=backend, **_state_kw(state))


def add_make(shape, dtype, device, gen):
    return {"x": torch.randn(shape, generator=gen, dtype=dtype).to(device),
            "sigma": (0.1 + torch.rand(_per_channel(shape), generator=gen, dtype=dtype)).to(device)}


ADD = Spec(
    name="noise_add", family="noise", fn=add_fn, make=add_make, shapes=SHAPES, grad_inputs=("x", "sigma"),
    op_call=_op_call("noise_add", ["sigma"]), noncontig_inputs=("x",),
    bad_inputs=_bad_common("sigma") + _bad_sigma("sigma") + [
        ("sigma-shape", lambda i: {**i, "sigma": torch.ones(4, 1, 1, 1, 1)}, ValueError, r"sigma must broadcast to x.shape"),
    ])

ADD_FLOAT = Spec(
    name="noise_add_float", family="noise", fn=add_fn,
    make=lambda shape, dtype, device, gen: {"x": torch.randn(shape, generator=gen, dtype=dtype).to(device), "sigma": 0.7},
    shapes=SHAPES[:2] + SHAPES[3:], grad_inputs=("x",), op_call=_op_call("noise_add", ["sigma"]),
    noncontig_inputs=("x",))

# a broadcast pattern with a hole ([C, 1, W]): expanded over its span by the layout
ADD_BCAST = Spec(
    name="noise_add_bcast", family="noise", fn=add_fn,
    make=lambda shape, dtype, device, gen: {
        "x": torch.randn(shape, generator=gen, dtype=dtype).to(device),
        "sigma": torch.rand(shape[1], 1, shape[3], generator=gen, dtype=dtype).to(device)},
    shapes=SHAPES[:2], grad_inputs=("x", "sigma"), op_call=_op_call("noise_add", ["sigma"]), noncontig_inputs=("x", "sigma"))


install(globals(), [ADD, ADD_FLOAT, ADD_BCAST])
